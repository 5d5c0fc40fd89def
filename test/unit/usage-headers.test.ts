import { parseUsage, regainAccessSeconds } from '../../src/meta/usage-headers';

const PAGE_ID = '104829376511820';
const IG_ID = '17841469920315587';

function headers(values: Record<string, string>): Headers {
  return new Headers(values);
}

describe('parseUsage', () => {
  it('reads X-App-Usage (contract §4.3) as the highest of its percentages', () => {
    const usage = parseUsage(headers({ 'X-App-Usage': JSON.stringify({ call_count: 28, total_time: 25, total_cputime: 31 }) }));
    expect(usage).toEqual({ maxPercent: 31, regainAccessSeconds: undefined });
  });

  it('reads X-Business-Use-Case-Usage across business objects and entries, with the regain time in seconds', () => {
    const buc = {
      [PAGE_ID]: [
        { type: 'messenger', call_count: 76, total_cputime: 12, total_time: 30, estimated_time_to_regain_access: 0 },
        { type: 'pages', call_count: 40, total_cputime: 4, total_time: 10, estimated_time_to_regain_access: 0 },
      ],
      [IG_ID]: [{ type: 'instagram', call_count: 20, total_cputime: 98, total_time: 9, estimated_time_to_regain_access: 3 }],
    };
    const usage = parseUsage(headers({ 'x-business-use-case-usage': JSON.stringify(buc), 'x-app-usage': JSON.stringify({ call_count: 5, total_time: 1, total_cputime: 1 }) }));
    expect(usage).toEqual({ maxPercent: 98, regainAccessSeconds: 180 });
  });

  it('takes the highest of all three headers, the ads one included', () => {
    const usage = parseUsage(
      headers({
        'x-app-usage': JSON.stringify({ call_count: 10, total_time: 10, total_cputime: 10 }),
        'x-business-use-case-usage': JSON.stringify({ [PAGE_ID]: [{ type: 'messenger', call_count: 50, total_cputime: 0, total_time: 0 }] }),
        'x-ad-account-usage': JSON.stringify({ acc_id_util_pct: 88.5, reset_time_duration: 120, ads_api_access_tier: 'standard_access' }),
      }),
    );
    expect(usage.maxPercent).toBe(88.5);
    // The ads header's reset time is a score decay, not a lockout: it never pauses sends.
    expect(usage.regainAccessSeconds).toBeUndefined();
  });

  it('reports above 100 % as Meta says, and reads numeric strings', () => {
    expect(parseUsage(headers({ 'x-app-usage': '{"call_count":"104","total_time":"3","total_cputime":0}' })).maxPercent).toBe(104);
  });

  it('rounds a fractional regain time up to whole seconds', () => {
    const h = headers({ 'x-business-use-case-usage': JSON.stringify({ [PAGE_ID]: [{ type: 'messenger', call_count: 100, estimated_time_to_regain_access: 0.51 }] }) });
    expect(parseUsage(h)).toEqual({ maxPercent: 100, regainAccessSeconds: 31 });
  });

  it('never throws on garbage and reads it as "no report"', () => {
    const garbage: Array<Record<string, string>> = [
      {},
      { 'x-app-usage': '' },
      { 'x-app-usage': 'not json' },
      { 'x-app-usage': 'null' },
      { 'x-app-usage': '[1,2,3]' },
      { 'x-app-usage': '{"call_count":"lots","total_time":null,"total_cputime":-4}' },
      { 'x-app-usage': '{"call_count":1e999}' },
      { 'x-business-use-case-usage': '{"104829376511820":' },
      { 'x-business-use-case-usage': '{"104829376511820":"messenger"}' },
      { 'x-business-use-case-usage': '{"104829376511820":[null,7,"x",[]]}' },
      { 'x-business-use-case-usage': '{"104829376511820":[{"estimated_time_to_regain_access":"soon"}]}' },
      { 'x-ad-account-usage': '{"acc_id_util_pct":{}}' },
    ];
    for (const h of garbage) expect(parseUsage(headers(h))).toEqual({ maxPercent: undefined, regainAccessSeconds: undefined });
  });

  it('keeps what is readable next to what is not', () => {
    const h = headers({
      'x-app-usage': 'garbage',
      'x-business-use-case-usage': JSON.stringify({ [PAGE_ID]: [{ type: 'messenger', call_count: 'x', total_time: 81, estimated_time_to_regain_access: -2 }] }),
    });
    expect(parseUsage(h)).toEqual({ maxPercent: 81, regainAccessSeconds: undefined });
  });

  it('accepts a single BUC entry that is an object instead of a list', () => {
    const h = headers({ 'x-business-use-case-usage': JSON.stringify({ [PAGE_ID]: { type: 'messenger', call_count: 77, estimated_time_to_regain_access: 1 } }) });
    expect(parseUsage(h)).toEqual({ maxPercent: 77, regainAccessSeconds: 60 });
  });
});

describe('regainAccessSeconds', () => {
  it('reads just the BUC header, and never throws on a value no header could hold', () => {
    expect(regainAccessSeconds(JSON.stringify({ [IG_ID]: [{ type: 'instagram', estimated_time_to_regain_access: 4 }] }))).toBe(240);
    expect(regainAccessSeconds(null)).toBeUndefined();
    expect(regainAccessSeconds('line\nbreak')).toBeUndefined();
  });
});
