export { conversationWorkflow } from './conversation';
export { keyRotationWorkflow } from './key-rotation';
export { dataKeyRotationWorkflow } from './data-key-rotation';
export { auditRetentionWorkflow } from './audit-retention';
export { onboardingWorkflow } from './onboarding';
export { notificationWorkflow } from './notification';
export { reconnectWorkflow } from './reconnect';
export { tokenRotationWorkflow, tokenCheckWorkflow } from './token-rotation';
