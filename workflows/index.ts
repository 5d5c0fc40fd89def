export { conversationWorkflow } from './conversation';
export { keyRotationWorkflow } from './key-rotation';
export { auditRetentionWorkflow } from './audit-retention';
export { onboardingWorkflow } from './onboarding';
