/** Workflow IDs carry opaque IDs only (tenant UUID, channel UUID, Meta's scoped customer ID). */
export function conversationWorkflowId(tenantId: string, channelId: string, customerId: string): string {
  return `conversation/${tenantId}/${channelId}/${customerId}`;
}
