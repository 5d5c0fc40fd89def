// Switchboard onboarding portal: progressive enhancement only — every form works without this.
// 1. The requirements checklist enables the connect buttons once all three boxes are ticked.
// 2. While the saga works ("waiting for Meta…", or a channel's "Reconnecting…"), polls
//    /portal/status.json and, when what the page shows changes, swaps #portal for the server's new
//    rendering (/portal/panel): the same escaped HTML as a full page load, parsed inert by
//    DOMParser (the CSP allows no inline script). Both get the page's query (`?reconnect=…`).
// 3. Moves focus to a problem box or the new step's heading so keyboard and screen-reader users
//    land where the page changed.
'use strict';

(() => {
  const POLL_MS = 1500;
  // The reconnect the page follows, if any: the status and the panel are about it too.
  const QUERY = window.location.search;
  const portal = document.getElementById('portal');
  const announcer = document.getElementById('announcer');

  function announce(message) {
    if (announcer) announcer.textContent = message;
  }

  function wireChecklist(root) {
    for (const form of root.querySelectorAll('form[data-checklist]')) {
      const boxes = [...form.querySelectorAll('input[type="checkbox"]')];
      const buttons = [...form.querySelectorAll('[data-connect]')];
      const hint = form.querySelector('[data-checklist-hint]');
      const update = () => {
        const ready = boxes.every((b) => b.checked);
        for (const button of buttons) button.disabled = !ready;
        if (hint) hint.textContent = ready ? 'Ready: choose how to connect.' : 'Tick all three boxes, then choose how to connect.';
      };
      for (const box of boxes) box.addEventListener('change', update);
      update();
    }
  }

  /** A second click on a submit button while the first post is on its way would start a second attempt. */
  function wireSubmitOnce(root) {
    for (const form of root.querySelectorAll('form')) {
      form.addEventListener('submit', () => {
        // After the submission has captured the clicked button's name and formaction.
        setTimeout(() => {
          for (const b of form.querySelectorAll('button[type="submit"]')) b.disabled = true;
        }, 0);
      });
    }
  }

  function focusProblem(root) {
    const problem = root.querySelector('[data-focus]');
    if (problem) problem.focus();
    return Boolean(problem);
  }

  function wire(root) {
    wireChecklist(root);
    wireSubmitOnce(root);
  }

  async function replacePanel() {
    const res = await fetch(`/portal/panel${QUERY}`, { credentials: 'same-origin', headers: { accept: 'text/html' } });
    if (res.status === 401 || res.redirected) {
      window.location.assign('/portal/login');
      return;
    }
    if (!res.ok) throw new Error(`panel ${res.status}`);
    const doc = new DOMParser().parseFromString(`<div id="fragment">${await res.text()}</div>`, 'text/html');
    const fragment = doc.getElementById('fragment');
    portal.replaceChildren(...[...fragment.childNodes].map((n) => document.importNode(n, true)));
    wire(portal);
    const heading = portal.querySelector('#panel-heading');
    if (!focusProblem(portal) && heading) {
      heading.setAttribute('tabindex', '-1');
      heading.focus();
    }
    if (heading) announce(heading.textContent);
  }

  async function poll() {
    let next = POLL_MS;
    try {
      const res = await fetch(`/portal/status.json${QUERY}`, { credentials: 'same-origin', headers: { accept: 'application/json' } });
      if (res.status === 401) {
        window.location.assign('/portal/login');
        return;
      }
      const body = await res.json();
      if (body.key && body.key !== portal.dataset.key) {
        await replacePanel();
        portal.dataset.key = body.key;
        const working = typeof body.working === 'boolean' ? body.working : body.key === 'unavailable' || body.status === 'working';
        portal.dataset.working = working ? 'yes' : 'no';
        if (!working) return;
      }
    } catch {
      announce('Lost the connection to Switchboard; trying again…');
      next = POLL_MS * 2;
    }
    setTimeout(poll, next);
  }

  wire(document);
  focusProblem(document);
  if (portal && portal.dataset.working === 'yes') setTimeout(poll, POLL_MS);
})();
