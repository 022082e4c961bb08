// Glimpse browser beacon: sends page views and custom events to a Glimpse collector.
//
// <script defer data-domain="example.com" src="https://collector.example/js/glimpse.js"></script>
//
// Optional attributes on the tag:
//   data-api="URL"          endpoint (default: the script's origin + /api/event)
//   data-hash               hash-based routing: the #fragment is part of the page
//   data-outbound           record clicks on links to other hosts
//   data-downloads[="a,b"]  record clicks on file links (value replaces the extension list)
//   data-exclude="/a/*,/b/**"  paths that send nothing (* = one segment, ** = anything)
//   data-local              also send from localhost and file: pages
//   data-allow-automation   also send when navigator.webdriver is set
//
// Privacy: no cookies, no browser storage, nothing read about the device or browser.
// The payload uses Plausible's field names so the collector's Events API parses it.
(() => {
  const win = window;
  const doc = document;
  const loc = location;
  const script = doc.currentScript;
  const attr = (name) => script.getAttribute('data-' + name);
  const has = (name) => attr(name) != null;

  const endpoint = attr('api') || new URL(script.src).origin + '/api/event';
  const domain = attr('domain');
  const hashMode = has('hash');
  const downloads = attr('downloads');
  // ",pdf,zip," form: one substring test per click, tolerant of spaces and dots in the attribute.
  const extensions = ',' + (downloads ||
    'pdf,xlsx,docx,txt,rtf,csv,exe,key,pps,ppt,pptx,7z,pkg,rar,gz,zip,avi,mov,mp4,mpeg,wmv,midi,mp3,wav,wma,dmg,iso,msi'
  ).replace(/[\s.]/g, '').toLowerCase() + ',';

  // Exclusion patterns become anchored regexes: escape regex syntax, then ** = anything,
  // * = one path segment; a trailing slash on the page path is tolerated.
  const excluded = (attr('exclude') || '').split(',').filter((p) => p.trim()).map((p) => new RegExp(
    '^' + p.trim().replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*\*?/g, (m) => (m[1] ? '.*' : '[^/]*')) + '/?$'
  ));

  // Development and automated browsers would only pollute the numbers: decided once, warned once.
  const ignored =
    !has('local') && (/^(localhost|127(\.\d+){3}|\[::1\])$/.test(loc.hostname) || loc.protocol == 'file:')
      ? 'local page, see data-local'
      : !has('allow-automation') && navigator.webdriver
        ? 'automated browser, see data-allow-automation'
        : '';
  if (ignored) console.warn('Glimpse: not sending (' + ignored + ')');

  // The page as Glimpse sees it: the path, plus the fragment in hash mode.
  const page = () => loc.pathname + (hashMode ? loc.hash : '');

  function track(name, options) {
    options = options || {};
    const callback = options.callback || (() => {});
    // Exclusions are matched against the bare path and, in hash mode, the path with its fragment.
    if (ignored || excluded.some((re) => re.test(loc.pathname) || re.test(page()))) return callback();
    const body = JSON.stringify({
      n: name,
      u: loc.href,
      d: domain,
      r: doc.referrer || null,
      p: options.props,
      revenue: options.revenue,
      h: hashMode ? 1 : undefined,
      i: options.interactive === false ? false : undefined,
    });
    if (win.fetch) {
      // text/plain keeps this a "simple" request (no CORS preflight); keepalive lets it
      // outlive the page, so link clicks need not delay navigation.
      fetch(endpoint, { method: 'POST', body, keepalive: true, headers: { 'Content-Type': 'text/plain' } })
        .then(() => callback(), () => callback());
    } else {
      navigator.sendBeacon(endpoint, body);
      callback();
    }
  }

  // One page view per distinct page: pushState with only a query change, replaceState that
  // keeps the path, and popstate back to the same path are all skipped.
  let last;
  const pageview = (force) => {
    if (force || page() != last) {
      last = page();
      track('pageview');
    }
  };

  const history = win.history;
  for (const method of ['pushState', 'replaceState']) {
    const original = history[method];
    history[method] = function () {
      original.apply(this, arguments);
      pageview();
    };
  }
  win.addEventListener('popstate', () => pageview());
  if (hashMode) win.addEventListener('hashchange', () => pageview());
  // A page restored from the back/forward cache is a new view of it, though no script reruns.
  win.addEventListener('pageshow', (e) => e.persisted && pageview(1));

  if (has('outbound') || downloads != null) {
    const onClick = (e) => {
      // Middle-click opens a new tab and fires only auxclick; ignore right-click's auxclick.
      if (e.type == 'auxclick' && e.button != 1) return;
      // The target may be an element nested inside the link. Only HTML <a> has tagName "A";
      // SVG links have "a" and no host/pathname, so they are skipped.
      let link = e.target;
      while (link && link.tagName != 'A') link = link.parentNode;
      if (!link) return;
      const ext = /\.(\w+)$/.exec(link.pathname);
      // A file link counts as a download even when it points to another host.
      if (downloads != null && ext && extensions.includes(',' + ext[1].toLowerCase() + ',')) {
        track('File Download', { props: { url: link.href.split(/[?#]/)[0] } });
      } else if (has('outbound') && link.host && link.host != loc.host) {
        track('Outbound Link: Click', { props: { url: link.href } });
      }
    };
    doc.addEventListener('click', onClick);
    doc.addEventListener('auxclick', onClick);
  }

  // A prerendered page is not a view until the visitor actually opens it.
  if (doc.prerendering) doc.addEventListener('prerenderingchange', () => pageview(), { once: true });
  else pageview();

  // Calls made before this script loaded were queued by the site's stub: install the real
  // function first, then replay them in order (after the page view, so it comes first).
  const queue = (win.glimpse && win.glimpse.q) || [];
  win.glimpse = track;
  for (const args of queue) track(...args);
})();
