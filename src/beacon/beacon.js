// Glimpse browser beacon: sends page views, custom events and engagement to a Glimpse collector.
// One source, two builds (scripts/build-beacon.sh sets PLAUSIBLE; terser drops the other build's
// code):
//
// glimpse.min.js, served at /js/glimpse.js, configured by attributes on its tag:
//
//   <script defer data-domain="example.com" src="https://collector.example/js/glimpse.js"></script>
//
//   data-api="URL"             endpoint (default: the script's origin + /api/event)
//   data-hash                  hash-based routing: the #fragment is part of the page
//   data-outbound              record clicks on links to other hosts
//   data-downloads[="pdf,zip"] record clicks on file links (a value replaces the default list)
//   data-exclude="/a/*,/b/**"  pages that send nothing (* = one path segment, ** = anything)
//   data-local                 also send from localhost and file: pages
//   data-allow-automation      also send when navigator.webdriver is set
//   data-engagement            report scroll depth and engaged time (see below)
//
//   Custom events: glimpse('Signup', {props, revenue, interactive: false, callback}).
//
// plausible.min.js, served at Plausible's names (/js/script.js, /js/plausible.js,
// /js/script.hash.outbound-links.js, ...): the collector replaces __GLIMPSE_EXTENSIONS__ with the
// extensions in the requested name, and the script behaves as that Plausible variant: the
// `plausible` function and its queue, data-api, data-domain, data-include/data-exclude
// (exclusions), file-types/add-file-types (file-downloads), event-* attributes
// (pageview-props), plausible-event-* classes (tagged-events), manual page views (manual),
// XMLHttpRequest and delayed navigation (compat), and engagement always. Plausible's current
// per-site snippet (/js/pa-<id>.js) gets the same build with no extension; its options come
// from plausible.init() (endpoint, hashBasedRouting, outboundLinks, fileDownloads,
// captureOnLocalhost, autoCapturePageviews, customProperties).
//
// Engagement: an `engagement` event with the deepest scroll so far (sd, %) and the milliseconds
// the page was visible and focused (e), sent when the page is hidden or loses focus and before
// the next page view, only if the visitor scrolled further or 3 s of engaged time built up.
//
// Privacy: no cookies, no browser storage, nothing read about the device or the browser.
// The payload uses Plausible's field names, which the collector's Events API accepts.
((extensions) => {
  const win = window;
  const doc = document;
  const loc = location;
  const nav = navigator;
  // Plausible's compat snippet gives the tag an id instead of relying on currentScript; the
  // engagement build loaded by glimpse.js reads the tag that loaded it.
  const script = PLAUSIBLE
    ? doc.currentScript || doc.getElementById('plausible')
    : (ENGAGEMENT && doc.querySelector('script[data-engagement]')) || doc.currentScript;
  const attr = (name) => script.getAttribute(name);
  // The tag's data-* attributes; a flag counts when present, whatever its value.
  const data = script.dataset;
  const on = (target, type, listener) => target.addEventListener(type, listener);
  const has = PLAUSIBLE ? (name) => extensions.split(' ').includes(name) : (name) => name in data;
  const noop = () => {};
  // Plausible's current snippet (/js/pa-*.js) passes its options through plausible.init().
  const init = (PLAUSIBLE && win.plausible && win.plausible.o) || {};

  // fetch and sendBeacon take a URL object as well as a string.
  const endpoint = data.api || (PLAUSIBLE && init.endpoint) || new URL('/api/event', script.src);
  const hashMode = PLAUSIBLE ? has('hash') || !!init.hashBasedRouting : has('hash');
  const local = PLAUSIBLE ? has('local') || !!init.captureOnLocalhost : has('local');
  const manual = PLAUSIBLE && (has('manual') || init.autoCapturePageviews === false);
  const compat = PLAUSIBLE && has('compat');
  const tagged = PLAUSIBLE && has('tagged-events');
  const outbound = PLAUSIBLE ? has('outbound-links') || !!init.outboundLinks : has('outbound');
  const engagement = PLAUSIBLE || ENGAGEMENT;
  // glimpse.js stays small: with data-engagement it hands over to the build that measures
  // engagement, which reads this tag (the queue waits for whichever installs itself).
  if (!PLAUSIBLE && !ENGAGEMENT && has('engagement')) {
    // An empty script element starts loading when it gets its src.
    doc.head.appendChild(doc.createElement('script')).src = new URL('glimpse.engagement.js', script.src);
    return;
  }
  // In a given list any run of non-word characters separates extensions ("pdf, .zip" works).
  const list = (types) => types.replace(/\W+/g, '|');
  const DEFAULT_TYPES =
    'pdf|xlsx|docx|txt|rtf|csv|exe|key|pptx?|pps|7z|pkg|rar|gz|zip|avi|mov|mp[34]|mpeg|wm[av]|midi|wav|dmg|iso|msi';
  const given = PLAUSIBLE && init.fileDownloads && init.fileDownloads.fileExtensions;
  const types = PLAUSIBLE
    ? (has('file-downloads') || !!init.fileDownloads) &&
      (given
        ? list(given.join(' '))
        : attr('add-file-types')
          ? list(attr('add-file-types')) + '|' + DEFAULT_TYPES
          : attr('file-types') ? list(attr('file-types')) : DEFAULT_TYPES)
    : data.downloads != null && (data.downloads ? data.downloads.replace(/\W+/g, '|') : DEFAULT_TYPES);
  const fileRe = types && RegExp('\\.(' + types + ')$', 'i');

  // Page patterns as anchored regexes: ** (the only two-character match) = anything,
  // * = one path segment, every other non-word character escaped (identity escapes are valid
  // in non-unicode regexes), and a trailing slash tolerated. Paths hold no spaces or commas,
  // so those separate the patterns.
  const patterns = (list) => ((list || '').match(/[^\s,]+/g) || []).map((pattern) => RegExp('^' + pattern.replace(
    /\*\*?|\W/g,
    (m) => (m[1] ? '.*' : m == '*' ? '[^/]*' : '\\' + m)
  ) + '/?$'));
  const excluded = patterns(PLAUSIBLE ? has('exclusions') && data.exclude : data.exclude);
  const included = PLAUSIBLE && has('exclusions') && data.include && patterns(data.include);
  // The page as Glimpse sees it: the path, plus the fragment in hash mode.
  const page = () => loc.pathname + (hashMode ? loc.hash : '');
  // Glimpse's exclusions silence every event; Plausible's only page views.
  const skipped = (pageview) =>
    (pageview || !PLAUSIBLE) &&
    (excluded.some((re) => re.test(page())) || (included && !included.some((re) => re.test(page()))));

  // Development pages and automated browsers would only pollute the numbers: decided once.
  // A file: page has an empty hostname, hence the empty alternative.
  const ignored = PLAUSIBLE
    ? !local &&
      (/^(|localhost|127(\.\d+){3}|\[::1?\])$/.test(loc.hostname) ||
        ((win._phantom || win.__nightmare || nav.webdriver || win.Cypress) && !win.__plausible))
    : (!local && /^(|localhost|127(\.\d+){3}|\[::1\])$/.test(loc.hostname)) ||
      (!has('allowAutomation') && nav.webdriver);
  // Plausible's variants say so in the console; glimpse.js has no bytes to spare for it.
  if (PLAUSIBLE && ignored) console.warn('Ignoring Event');

  // A string body is sent as text/plain;charset=UTF-8, a "simple" request with no CORS
  // preflight, so no header is set. keepalive lets the request outlive the page, so link
  // clicks need not delay navigation. (Every browser with keepalive has fetch.)
  const post = (payload, callback) => {
    if (compat) {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', endpoint, true);
      xhr.setRequestHeader('Content-Type', 'text/plain');
      xhr.onreadystatechange = () => xhr.readyState == 4 && callback({ status: xhr.status });
      xhr.send(JSON.stringify(payload));
    } else if (PLAUSIBLE) {
      fetch(endpoint, { method: 'POST', body: JSON.stringify(payload), keepalive: true })
        .then((r) => callback({ status: r.status }), (error) => callback({ error }));
    } else fetch(endpoint, { method: 'POST', body: JSON.stringify(payload), keepalive: true }).then(callback, callback);
  };

  // Engagement of the page last viewed: the deepest point seen (px), what was last reported,
  // engaged milliseconds not yet reported, and since when the page is visible and focused.
  let engagedUrl;
  let engagedProps;
  let deepest = 0;
  let reported = -1;
  let engagedMs = 0;
  let engagedSince = 0;
  const height = () => Math.max(doc.documentElement.scrollHeight, (doc.body || doc.documentElement).scrollHeight);
  // How far down the page the visitor has seen: all of it when it fits the window.
  const seen = () => Math.min(height(), scrollY + innerHeight);
  const attentive = () => doc.visibilityState == 'visible' && doc.hasFocus();
  const report = () => {
    const e = engagedMs + (engagedSince && Date.now() - engagedSince);
    if (engagedUrl && (deepest > reported || e >= 3000)) {
      post({
        n: 'engagement',
        u: engagedUrl,
        d: data.domain,
        p: engagedProps,
        sd: Math.min(100, Math.round((deepest / height()) * 100)),
        e,
        h: hashMode,
      }, noop);
      reported = deepest;
      engagedMs = 0;
      engagedSince = attentive() && Date.now();
    }
  };
  if (engagement) {
    const attention = () => {
      if (attentive()) {
        engagedSince = engagedSince || Date.now();
      } else {
        engagedMs += engagedSince && Date.now() - engagedSince;
        engagedSince = 0;
        report();
      }
    };
    on(doc, 'visibilitychange', attention);
    on(win, 'blur', attention);
    on(win, 'focus', attention);
    on(doc, 'scroll', () => {
      deepest = Math.max(deepest, seen());
    });
  }

  // pageview-props: event-<prop> attributes on the tag, for every event; the call's own win.
  const tagProps = (given) => {
    const props = { ...given };
    for (const a of script.attributes) {
      const key = a.name.replace(/^event-/, '');
      if (key != a.name) props[key] = props[key] || a.value;
    }
    return props;
  };

  // A Plausible event's props: the call's own, then event-<prop> attributes (pageview-props),
  // then plausible.init({customProperties}) (an object, or a function of the event name).
  const plausibleProps = (name, given) => {
    const custom = init.customProperties;
    const props = has('pageview-props') ? tagProps(given) : given;
    return custom ? { ...(typeof custom == 'function' ? custom(name) : custom), ...props } : props;
  };

  const track = (name, options = {}) => {
    const callback = PLAUSIBLE ? options.callback || noop : options.callback;
    const pageview = name == 'pageview';
    if (engagement && pageview) {
      // The previous page's last report, then measure the new page from its top.
      report();
      engagedUrl = 0;
      deepest = seen();
    }
    // In hash mode exclusions match the path with its fragment ("/#/admin/**").
    if (ignored || skipped(pageview)) return callback && callback();
    const props = PLAUSIBLE ? plausibleProps(name, options.props) : options.props;
    const payload = {
      n: name,
      u: (manual && (options.u || options.url)) || loc.href,
      d: data.domain, // sent as written: the collector splits "a.com,b.org"
      r: PLAUSIBLE ? doc.referrer || null : doc.referrer,
      p: props,
      revenue: options.revenue,
      // false and undefined are the defaults (undefined is left out of the JSON).
      h: hashMode,
      i: options.interactive,
    };
    post(payload, callback);
    if (engagement && pageview) {
      engagedUrl = payload.u;
      engagedProps = props;
      reported = -1;
      engagedMs = 0;
      engagedSince = attentive() && Date.now();
    }
  };

  // One page view per distinct page: Glimpse skips a pushState that changes only the query, a
  // replaceState that keeps the path, and a popstate back to the same path; Plausible's
  // variants skip a pushState or popstate that keeps the path, and count every hash change.
  let last;
  const pageview = () => {
    const now = PLAUSIBLE && !hashMode ? loc.pathname : page();
    if (now != last || (PLAUSIBLE && hashMode)) {
      last = now;
      track('pageview');
    }
  };

  if (!manual) {
    const history = win.history;
    (PLAUSIBLE ? ['pushState'] : ['pushState', 'replaceState']).map((method) => {
      const original = history[method];
      history[method] = function () {
        original.apply(this, arguments);
        pageview();
      };
    });
    if (hashMode) on(win, 'hashchange', pageview);
    if (!PLAUSIBLE || !hashMode) on(win, 'popstate', pageview);
    // A page restored from the back-forward cache is viewed again.
    if (PLAUSIBLE) on(win, 'pageshow', (e) => e.persisted && track('pageview'));
  }

  // Plausible's tagged elements: plausible-event-name=Signup plausible-event-plan=pro (a + is
  // a space) and, with revenue, plausible-revenue-amount=9.99 plausible-revenue-currency=EUR.
  const tags = (element) => {
    const event = { props: {} };
    const revenue = {};
    for (const c of ((element && element.getAttribute && element.getAttribute('class')) || '').split(/\s+/)) {
      const m = c.match(/plausible-(event|revenue)-(.+)(=|--)(.+)/);
      if (m && m[1] == 'revenue') revenue[m[2]] = m[4];
      else if (m && m[2].toLowerCase() == 'name') event.name = m[4].replace(/\+/g, ' ');
      else if (m) event.props[m[2]] = m[4].replace(/\+/g, ' ');
    }
    if (has('revenue') && revenue.currency) event.revenue = revenue;
    return event.name && event;
  };

  // compat: hold a navigation until the event is sent, or 5 s.
  const follow = (e, options, go) => {
    let done;
    const once = () => done || ((done = 1), go());
    e.preventDefault();
    setTimeout(once, 5000);
    options.callback = once;
  };

  if (outbound || fileRe || tagged) {
    const onClick = (e) => {
      // click fires for the primary button only, auxclick for the others: keep middle-click
      // (opens a new tab), skip right-click and the rest.
      if (e.button > 1) return;
      if (!PLAUSIBLE) {
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
        return;
      }
      const link = e.target.closest && e.target.closest('a[href]');
      let event;
      if (tagged) {
        // The target or one of 3 ancestors; a form's own tag counts only on its submit.
        for (let el = e.target, i = 0; el && i < 4 && !event && el.tagName != 'FORM'; el = el.parentNode, i++) {
          event = tags(el);
        }
      }
      const url = link && link.origin + link.pathname;
      const download = link && fileRe && fileRe.test(link.pathname);
      const away = link && outbound && link.host && link.host != loc.host;
      if (event) {
        if (link) event.props.url = url;
      } else if (away || download) {
        // Plausible counts a file on another host as an outbound click.
        event = { name: away ? 'Outbound Link: Click' : 'File Download', props: { url } };
      } else return;
      const options = { props: event.props, revenue: event.revenue };
      if (
        compat && link && e.type == 'click' && !e.defaultPrevented && !(e.ctrlKey || e.metaKey || e.shiftKey) &&
        /^(_self|_parent|_top|)$/i.test(link.target)
      ) {
        follow(e, options, () => (loc.href = link.href));
      }
      track(event.name, options);
    };
    on(doc, 'click', onClick);
    on(doc, 'auxclick', onClick);
  }
  if (tagged) {
    on(doc, 'submit', (e) => {
      const form = e.target;
      const event = tags(form) || tags(form.parentNode);
      if (!event) return;
      const options = { props: event.props, revenue: event.revenue };
      if (compat) follow(e, options, () => form.submit());
      track(event.name, options);
    });
  }

  // A page opened unseen (prerendered, or Plausible's variants in a background tab) is not a
  // view until the visitor actually opens it.
  if (!manual) {
    if (doc.prerendering) on(doc, 'prerenderingchange', pageview);
    else if (PLAUSIBLE && doc.visibilityState == 'hidden') {
      const shown = () => {
        if (doc.visibilityState == 'visible' && !last) pageview();
      };
      on(doc, 'visibilitychange', shown);
    } else pageview();
  }

  // Calls made before this script loaded were queued by the site's stub: replay them in
  // order (after the first page view, so that comes first), then install the real function.
  ((win.glimpse && win.glimpse.q) || []).map((args) => track(...args));
  if (PLAUSIBLE) ((win.plausible && win.plausible.q) || []).map((args) => track(...args));
  win.glimpse = track;
  if (PLAUSIBLE) {
    win.plausible = track;
    // The current snippet may call init again; the options were read once.
    track.init = noop;
    track.l = true;
  }
})(PLAUSIBLE ? __GLIMPSE_EXTENSIONS__ : '');
