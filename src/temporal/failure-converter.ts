import { DefaultFailureConverter } from '@temporalio/common';

/**
 * Loaded by path (clients, workers and the workflow sandbox all need it): failure messages and
 * stack traces go into the encoded attributes payload, which the payload codec encrypts.
 */
export const failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
