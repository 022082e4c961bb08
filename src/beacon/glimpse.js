// Glimpse browser beacon: sends page views and custom events to a Glimpse collector.
//
//   <script defer data-domain="example.com" src="https://collector.example/js/glimpse.js"></script>
//
// Optional attributes on the tag:
//   data-api="URL"             endpoint (default: the script's origin + /api/event)
//   data-hash                  hash-based routing: the #fragment is part of the page
//   data-outbound              record clicks on links to other hosts
//   data-downloads[="pdf,zip"] record clicks on file links (a value replaces the default list)
//   data-exclude="/a/*,/b/**"  pages that send nothing (* = one path segment, ** = anything)
//   data-local                 also send from localhost and file: pages
//   data-allow-automation      also send when navigator.webdriver is set
//
// Custom events: glimpse('Signup', {props, revenue, interactive: false, callback}).
//
// Privacy: no cookies, no browser storage, nothing read about the device or the browser.
// The payload uses Plausible's field names, which the collector's Events API accepts.
// Build the committed glimpse.min.js with scripts/build-beacon.sh.
(() => {
  const win = window;
  const doc = document;
  const loc = location;
  const nav = navigator;
  const script = doc.currentScript;
  // The tag's data-* attributes; a flag counts when present, whatever its value.
  const data = script.dataset;
  const on = (target, type, listener) => target.addEventListener(type, listener);

  // fetch and sendBeacon take a URL object as well as a string.
  const endpoint = data.api || new URL('/api/event', script.src);
  const hashMode = 'hash' in data;
  const outbound = 'outbound' in data;
  const downloads = data.downloads;
  // In a given list any run of non-word characters separates extensions ("pdf, .zip" works).
  const fileRe = downloads != null && RegExp('\\.(' + (downloads
    ? downloads.replace(/\W+/g, '|')
    : 'pdf|xlsx|docx|txt|rtf|csv|exe|key|pptx?|pps|7z|pkg|rar|gz|zip|avi|mov|mp[34]|mpeg|wm[av]|midi|wav|dmg|iso|msi'
  ) + ')$', 'i');

  // Excluded pages as anchored regexes: ** (the only two-character match) = anything,
  // * = one path segment, every other non-word character escaped (identity escapes are valid
  // in non-unicode regexes), and a trailing slash tolerated. Paths hold no spaces or commas,
  // so those separate the patterns.
  const excluded = (data.exclude || '').match(/[^\s,]+/g) || [];
  const excludedRes = excluded.map((pattern) => RegExp('^' + pattern.replace(
    /\*\*?|\W/g,
    (m) => (m[1] ? '.*' : m == '*' ? '[^/]*' : '\\' + m)
  ) + '/?$'));

  // Development pages and automated browsers would only pollute the numbers: decided once.
  // A file: page has an empty hostname, hence the empty alternative.
  const ignored =
    (!('local' in data) && /^(|localhost|127(\.\d+){3}|\[::1\])$/.test(loc.hostname)) ||
    (!('allowAutomation' in data) && nav.webdriver);
  if (ignored) console.warn('Glimpse: ignored');

  // The page as Glimpse sees it: the path, plus the fragment in hash mode.
  const page = () => loc.pathname + (hashMode ? loc.hash : '');

  const track = (name, options = {}) => {
    const callback = options.callback || (() => {});
    // In hash mode exclusions match the path with its fragment ("/#/admin/**").
    if (ignored || excludedRes.some((re) => re.test(page()))) return callback();
    const body = JSON.stringify({
      n: name,
      u: loc.href,
      d: data.domain, // sent as written: the collector splits "a.com,b.org"
      r: doc.referrer || null,
      p: options.props,
      revenue: options.revenue,
      h: hashMode ? 1 : undefined,
      i: options.interactive === false ? false : undefined,
    });
    if (win.fetch) {
      // A string body is sent as text/plain;charset=UTF-8 (as sendBeacon does), a "simple"
      // request with no CORS preflight, so no header is set. keepalive lets the request
      // outlive the page, so link clicks need not delay navigation.
      fetch(endpoint, { method: 'POST', body, keepalive: true })
        .then(callback, callback);
    } else {
      nav.sendBeacon(endpoint, body);
      callback();
    }
  };

  // One page view per distinct page: a pushState that changes only the query, a replaceState
  // that keeps the path, and a popstate back to the same path are all skipped.
  let last;
  const pageview = () => {
    if (page() != last) {
      last = page();
      track('pageview');
    }
  };

  const history = win.history;
  ['pushState', 'replaceState'].map((method) => {
    const original = history[method];
    history[method] = function () {
      original.apply(this, arguments);
      pageview();
    };
  });
  on(win, 'popstate', pageview);
  if (hashMode) on(win, 'hashchange', pageview);

  if (outbound || fileRe) {
    const onClick = (e) => {
      // click fires for the primary button only, auxclick for the others: keep middle-click
      // (opens a new tab), skip right-click and the rest.
      if (e.button > 1) return;
      // The target may sit inside the link. An SVG <a> has no host or pathname: no event.
      const link = e.target.closest('a');
      if (!link) return;
      // Only where the link goes: no query, fragment or credentials (they carry tokens).
      const props = { props: { url: link.origin + link.pathname } };
      // A file link counts as a download even when it points to another host.
      if (fileRe && fileRe.test(link.pathname)) {
        track('File Download', props);
      } else if (outbound && link.host && link.host != loc.host) {
        track('Outbound Link: Click', props);
      }
    };
    on(doc, 'click', onClick);
    on(doc, 'auxclick', onClick);
  }

  // A prerendered page is not a view until the visitor actually opens it.
  if (doc.prerendering) on(doc, 'prerenderingchange', pageview);
  else pageview();

  // Calls made before this script loaded were queued by the site's stub: replay them in
  // order (after the first page view, so that comes first), then install the real function.
  ((win.glimpse && win.glimpse.q) || []).map((args) => track(...args));
  win.glimpse = track;
})();
