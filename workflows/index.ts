export { conversationWorkflow } from './conversation';
export { keyRotationWorkflow } from './key-rotation';
