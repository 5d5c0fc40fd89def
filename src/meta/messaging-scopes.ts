/**
 * The permissions Switchboard's messaging needs (contract §5.4). The portal's connect dialogs ask
 * for exactly these, and the Graph sandbox grants them to seeded tokens and to Facebook Login for
 * Business configurations; one list, so the sandbox cannot drift from what the portal asks for.
 */

/** Facebook Login: Messenger on Pages and Instagram accounts reached through their Page. */
export const FACEBOOK_MESSAGING_SCOPES = Object.freeze([
  'pages_show_list',
  'pages_messaging',
  'pages_manage_metadata',
  'pages_read_engagement',
  'instagram_basic',
  'instagram_manage_messages',
  'business_management',
] as const);

/** Instagram Login (the post-January-2025 scope names; the old ones are refused). */
export const INSTAGRAM_MESSAGING_SCOPES = Object.freeze(['instagram_business_basic', 'instagram_business_manage_messages'] as const);
