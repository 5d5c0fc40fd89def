import nodemailer from 'nodemailer';
import { escapeHtml } from '../dashboard/html';
import type { NotificationKind } from '../../workflows/token-lifecycle-definitions';

/**
 * The e-mail of a notification episode, written for a business owner: which account, what it
 * means for their customers, what to do and where. Built only from the episode and the channel's
 * platform and account id (a business identifier): never a token, never anything a customer wrote.
 */

export interface EpisodeMailFacts {
  kind: NotificationKind;
  level: 'warning' | 'critical';
  /** Failure type and Graph code, or the expiry (notification_episodes.reason). */
  reason: string;
  expiresAt: Date | null;
  channel: { platform: 'messenger' | 'instagram'; accountId: string };
  /** Replies waiting for the reconnect (reauth_required). */
  parkedReplies: number;
  /** `${PUBLIC_BASE_URL}/portal`. */
  portalUrl: string;
}

export interface ComposedMail {
  subject: string;
  text: string;
  html: string;
}

const accountName = (c: EpisodeMailFacts['channel']) =>
  c.platform === 'instagram' ? `Instagram account ${c.accountId}` : `Facebook Page ${c.accountId} (Messenger)`;
const shortName = (c: EpisodeMailFacts['channel']) => (c.platform === 'instagram' ? `Instagram account ${c.accountId}` : `Facebook Page ${c.accountId}`);
const isoDay = (d: Date) => d.toISOString().slice(0, 10);

export function portalUrlOf(publicBaseUrl: string): string {
  return `${publicBaseUrl.replace(/\/+$/, '')}/portal`;
}

/** Subject, plain text and a simple HTML version; the subject differs per kind (and says so when urgent). */
export function composeEpisodeEmail(f: EpisodeMailFacts): ComposedMail {
  const account = accountName(f.channel);
  const paragraphs: string[] = [];
  let subject: string;
  if (f.kind === 'reauth_required') {
    subject = `Action needed: reconnect your ${shortName(f.channel)}`;
    paragraphs.push(`Your ${account} needs to be reconnected: replies to your customers are on hold until you do.`);
    paragraphs.push(
      'Messages from your customers are still being received and collected. ' +
        (f.parkedReplies > 0
          ? `${f.parkedReplies} ${f.parkedReplies === 1 ? 'reply is' : 'replies are'} waiting and will be sent, in order, once the account is reconnected. `
          : 'Replies written meanwhile wait and are sent, in order, once the account is reconnected. ') +
        "Meta only allows replies within 24 hours of a customer's last message, so reconnect soon.",
    );
  } else {
    const day = f.expiresAt ? isoDay(f.expiresAt) : null;
    subject = `${f.level === 'critical' ? 'Urgent: the' : 'The'} connection to your ${shortName(f.channel)} expires${day ? ` on ${day}` : ' soon'}`;
    paragraphs.push(
      `The connection to your ${account} expires${day ? ` on ${day}` : ' soon'}${f.level === 'critical' ? ' — before Switchboard can renew it' : ''}. ` +
        'After that, replies to your customers are on hold until you reconnect it.',
    );
    paragraphs.push('Reconnecting now takes a minute and avoids any interruption.');
  }
  const action = `Reconnect it here: ${f.portalUrl}`;
  const detail = `Technical detail, for your support contact: ${f.reason}`;
  const signOff = '— Switchboard';
  const text = [...paragraphs, action, detail, signOff].join('\n\n') + '\n';
  const html = [
    '<!doctype html><html lang="en"><body>',
    ...paragraphs.map((p) => `<p>${escapeHtml(p)}</p>`),
    `<p><a href="${escapeHtml(f.portalUrl)}">Reconnect your account</a> (${escapeHtml(f.portalUrl)})</p>`,
    `<p style="color:#57606a">${escapeHtml(detail)}</p>`,
    `<p>${escapeHtml(signOff)}</p>`,
    '</body></html>',
  ].join('\n');
  return { subject, text, html };
}

export interface OutgoingMail extends ComposedMail {
  to: string[];
  /** Message-ID seed: the same episode yields the same id, so a duplicate after a crash is recognisable. */
  messageId?: string;
}

/** Why an SMTP exchange failed: `permanent` for a 5xx answer (bad address, refused), else worth a retry. */
export class MailError extends Error {
  constructor(
    message: string,
    readonly permanent: boolean,
    readonly responseCode?: number,
  ) {
    super(message);
    this.name = 'MailError';
  }
}

export interface Mailer {
  send(mail: OutgoingMail): Promise<{ accepted: number; rejected: number }>;
  close(): void;
}

/**
 * A nodemailer SMTP transport from `SMTP_URL` (`smtp://` or `smtps://`, credentials in the URL).
 * One connection per message (notifications are rare), bounded by timeouts so a dead server turns
 * into a retryable activity failure instead of a hang. Errors carry the SMTP status only: the
 * server's text may echo an address.
 */
export function createMailer(opts: { smtpUrl: string; from: string; timeoutMs?: number }): Mailer {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const transport = nodemailer.createTransport(
    { url: opts.smtpUrl, connectionTimeout: timeoutMs, greetingTimeout: timeoutMs, socketTimeout: timeoutMs * 2 },
    { from: opts.from },
  );
  return {
    async send(mail) {
      try {
        const info = await transport.sendMail({
          to: mail.to,
          subject: mail.subject,
          text: mail.text,
          html: mail.html,
          ...(mail.messageId ? { messageId: mail.messageId } : {}),
        });
        return { accepted: info.accepted.length, rejected: info.rejected.length };
      } catch (err) {
        const e = err as { responseCode?: number; code?: string };
        const code = typeof e.responseCode === 'number' ? e.responseCode : undefined;
        if (code !== undefined) throw new MailError(`SMTP ${code}`, code >= 500, code);
        throw new MailError(`SMTP ${e.code ?? 'error'}`, e.code === 'EENVELOPE');
      }
    },
    close() {
      transport.close();
    },
  };
}
