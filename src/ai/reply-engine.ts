import type { MessageEvent, PostbackEvent } from '../shared/types';

export interface ReplyRequest {
  tenantId: string;
  event: MessageEvent | PostbackEvent;
}

export interface Reply {
  text: string;
}

/** Produces the bot's answer to one customer turn. The AI issue adds LLM-backed engines. */
export interface ReplyEngine {
  reply(request: ReplyRequest): Promise<Reply | null>;
}
