// Warns before the automatic sign-out of an idle session (accounts/idle.py), and leaves for the login page
// when it comes. <body> (in the admin: this script's own element) carries data-idle-timeout and
// data-idle-warning (seconds), data-idle-url (GET: seconds left, sent as background so that asking is
// not activity; POST: "Stay signed in", which is) and data-login-url. The server's answer decides, not
// this page's clock: activity in another tab counts, and a session ended elsewhere (signed out in
// another tab, "Sign out everywhere") is noticed.
(function () {
  var settings = document.querySelector("[data-idle-url]");
  if (!settings) return;
  var body = document.body;
  var url = settings.getAttribute("data-idle-url");
  var loginUrl = settings.getAttribute("data-login-url");
  var timeout = Number(settings.getAttribute("data-idle-timeout"));
  var warning = Number(settings.getAttribute("data-idle-warning"));
  if (!url || !loginUrl || !(warning > 0) || !(timeout > warning)) return;

  var RECHECK_MS = 5000; // while warning: notices "Stay signed in" pressed in another tab
  var deadline = 0; // Date.now() at which the session ends, as last heard
  var timer = null;
  var ticker = null;
  var focusBefore = null;
  var dialog = build();

  function element(tag, attributes, text) {
    var el = document.createElement(tag);
    Object.keys(attributes).forEach(function (name) { el.setAttribute(name, attributes[name]); });
    if (text) el.textContent = text;
    return el;
  }

  function build() {
    var box = element("div", {
      "class": "idle-warning", role: "alertdialog", "aria-modal": "false",
      "aria-labelledby": "idle-warning-title", "aria-describedby": "idle-warning-text", "data-testid": "idle-warning",
    });
    box.hidden = true;
    var text = element("p", { id: "idle-warning-text" });
    var count = element("strong", { "data-testid": "idle-countdown" });
    text.appendChild(document.createTextNode("You will be signed out in "));
    text.appendChild(count);
    text.appendChild(document.createTextNode(" because of inactivity."));
    var stay = element("button", { type: "button", "class": "btn", "data-testid": "idle-stay" }, "Stay signed in");
    stay.addEventListener("click", staySignedIn);
    box.appendChild(element("h2", { id: "idle-warning-title" }, "Still there?"));
    box.appendChild(text);
    box.appendChild(stay);
    body.appendChild(box);
    return { box: box, count: count, stay: stay };
  }

  function secondsLeft() { return Math.max(0, Math.ceil((deadline - Date.now()) / 1000)); }

  function tick() {
    var s = secondsLeft();
    dialog.count.textContent = Math.floor(s / 60) + ":" + ("0" + (s % 60)).slice(-2);
  }

  function show() {
    tick();
    if (!dialog.box.hidden) return;
    focusBefore = document.activeElement;
    dialog.box.hidden = false;
    dialog.stay.focus(); // an alertdialog takes the focus: the keyboard's Enter keeps the session
    ticker = setInterval(tick, 1000);
  }

  function hide() {
    if (dialog.box.hidden) return;
    var hadFocus = document.activeElement === dialog.stay;
    dialog.box.hidden = true;
    clearInterval(ticker);
    if (hadFocus && focusBefore && focusBefore.focus) focusBefore.focus();
  }

  function signOut() {
    clearTimeout(timer);
    var here = window.location.pathname + window.location.search;
    window.location.assign(loginUrl + "?next=" + encodeURIComponent(here));
  }

  // Plan from the seconds the server says are left: quiet until the warning, then a countdown.
  function plan(remaining) {
    clearTimeout(timer);
    if (remaining <= 0) { signOut(); return; }
    deadline = Date.now() + remaining * 1000;
    if (remaining > warning) {
      hide();
      timer = setTimeout(check, (remaining - warning) * 1000);
    } else {
      show();
      timer = setTimeout(check, Math.min(remaining * 1000 + 250, RECHECK_MS));
    }
  }

  function csrfToken() {
    var cookie = /(?:^|;\s*)csrftoken=([^;]+)/.exec(document.cookie); // current even after a sign-in elsewhere
    if (cookie) return decodeURIComponent(cookie[1]);
    var field = document.querySelector("input[name=csrfmiddlewaretoken]"); // the header's sign-out form
    return field ? field.value : "";
  }

  // Seconds left, from the server; 0 once the session is signed out (401).
  function ask(method) {
    var headers = { Accept: "application/json" };
    if (method === "POST") headers["X-CSRFToken"] = csrfToken();
    else headers["X-Background-Request"] = "1";
    return fetch(url, { method: method, credentials: "same-origin", headers: headers }).then(function (r) {
      if (r.status === 401) return 0;
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json().then(function (answer) { return answer.remaining; });
    });
  }

  function check() {
    ask("GET").then(plan, function () {
      // Offline or a server error: keep the countdown and ask again; the server refuses a late request anyway.
      clearTimeout(timer);
      timer = setTimeout(check, RECHECK_MS);
    });
  }

  function staySignedIn() { ask("POST").then(plan, check); }

  // This page's own request was activity: the session has the whole period left (the server corrects it).
  plan(timeout);
  // Timers sleep with the computer and in hidden tabs: ask again when the page is seen.
  document.addEventListener("visibilitychange", function () { if (!document.hidden) check(); });
  window.addEventListener("pageshow", function (event) { if (event.persisted) check(); });
})();
