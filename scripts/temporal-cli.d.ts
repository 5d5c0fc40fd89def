export declare function resolveTemporalCli(opts?: { install?: boolean }): string | undefined;
export declare function resolveTestServer(opts?: { install?: boolean }): string | undefined;
export declare const TOOLS: string;
