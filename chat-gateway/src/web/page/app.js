// The chat room in a browser. Served by chat-server at /app.js; the page's Content-Security-Policy
// allows this script and nothing else. Everything other people wrote is inserted with
// textContent, never as HTML, inside <bdi> so that it cannot reorder what is around it.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const status = $("status"), join = $("join"), nameInput = $("name"), nameError = $("name-error");
  const messages = $("messages"), send = $("send"), input = $("message"), sendError = $("send-error");
  const members = $("members"), online = $("online"), onlineCount = $("online-count");
  const membersTitle = $("members-title"), sendButton = $("send-button"), awayButton = $("away");
  const notifyButton = $("notify"), membersToggle = $("members-toggle"), newMessages = $("new-messages");
  const log = $("log"), title = document.title;

  let ws = null;
  let me = null;          // the name the room registered, while joined
  let wanted = null;      // the name to (re)join with
  let limits = null;
  let roster = new Map(); // name -> away message (null while here)
  let count = 0;
  let retry = 250;        // reconnect backoff, ms
  let timer = null;
  let stay = true;        // false once the member chose to leave
  let lastSent = null;    // the last line sent, and its entry in the list, for a refused send
  let lastSeq = null;     // the last chat seen, to resume after (the CLI's rule)
  let epoch = null;       // the room's epoch from the welcome
  let rejoining = false;  // the next hello follows a lost connection: resume first
  let resumed = false;    // the last welcome followed a resume: its history is what was missed
  let unread = 0;         // chats that came while the tab was hidden
  let notify = false;     // desktop notifications on a mention, once turned on

  const bytes = (s) => new TextEncoder().encode(s).length;
  const sendJson = (msg) => { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg)); };
  // Runs of whitespace of any kind are one space: text cannot push a forged line into view.
  const collapse = (s) => String(s).replace(/\s+/gu, " ").trim();

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  // An isolated piece of someone else's text: a name (full name on hover) or a message.
  function bdi(cls, text) {
    const el = document.createElement("bdi");
    el.className = cls;
    el.textContent = collapse(text);
    if (cls === "from") el.title = text;
    return el;
  }

  function stamp(ms) {
    const at = ms > 0 ? new Date(ms) : new Date();
    const time = document.createElement("time");
    time.dateTime = at.toISOString();
    time.textContent = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    time.title = at.toLocaleString();
    return time;
  }

  const atBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 40;

  // Appends one entry: its own block, its time, then its parts (strings or nodes).
  function entry(cls, ms, ...parts) {
    const li = document.createElement("li");
    li.className = cls;
    li.append(stamp(ms));
    const body = document.createElement("span");
    body.className = "body";
    body.append(...parts);
    li.append(body);
    const bottom = atBottom();
    messages.append(li);
    if (bottom || cls.includes("mine")) li.scrollIntoView({ block: "end" });
    else newMessages.hidden = false;
    return li;
  }

  const notice = (ms, ...parts) => entry("event", ms, "* ", ...parts);

  function mentions(text, name) {
    if (!name) return false;
    const hay = text.toLowerCase(), needle = name.toLowerCase();
    const word = (c) => c !== undefined && /[\p{L}\p{N}_]/u.test(c);
    for (let at = hay.indexOf(needle); at >= 0; at = hay.indexOf(needle, at + 1)) {
      if (!word(hay[at - 1]) && !word(hay[at + needle.length])) return true;
    }
    return false;
  }

  // A chat, live or from the history, shown as its kind says.
  function chat(c, earlier) {
    const mine = c.from === me && !earlier;
    let cls = "chat " + (c.kind || "plain") + (earlier ? " earlier" : "") + (mine ? " mine" : "");
    const mention = !mine && mentions(c.text, me);
    if (mention) cls += " mention";
    let li;
    if (c.kind === "action") li = entry(cls, c.time, "* ", bdi("from", c.from), " ", bdi("text", c.text));
    else if (c.kind === "notice") li = entry(cls, c.time, bdi("from", c.from), " (notice) ", bdi("text", c.text));
    else li = entry(cls, c.time, bdi("from", c.from), " ", bdi("text", c.text));
    if (!earlier && !mine) heard(c, mention);
    return li;
  }

  // A chat from someone else arrived live: count it while hidden, notify on a mention.
  function heard(c, mention) {
    if (document.hidden) {
      unread += 1;
      document.title = "(" + unread + ") " + title;
    }
    if (mention && notify && document.hidden && "Notification" in window) {
      new Notification(collapse(c.from), { body: collapse(c.text), tag: "chat-mention" });
    }
  }

  function renderMembers() {
    const names = [...roster.keys()].sort((a, b) => a.localeCompare(b));
    members.replaceChildren(...names.map((name) => {
      const li = document.createElement("li");
      li.append(bdi("from", name));
      const away = roster.get(name);
      if (away !== null && away !== undefined) {
        li.className = "away";
        const mark = document.createElement("span");
        mark.className = "away-mark";
        mark.textContent = " away";
        mark.title = away;
        li.append(mark);
      }
      if (name === me) li.classList.add("me");
      return li;
    }));
    online.textContent = String(count);
    onlineCount.hidden = me === null;
    membersTitle.hidden = me !== null;
    membersToggle.textContent = me === null ? "Members" : "Members (" + count + ")";
    const mine = me !== null && roster.get(me);
    awayButton.textContent = mine ? "Back" : "Set away";
    awayButton.setAttribute("aria-pressed", mine ? "true" : "false");
  }

  function setJoined(name) {
    me = name;
    join.classList.toggle("joined", name !== null);
    input.disabled = name === null;
    sendButton.disabled = name === null;
    awayButton.disabled = name === null;
    input.placeholder = name === null ? "Join to chat" : "Message";
    if (name === null) { roster = new Map(); count = 0; }
    renderMembers();
  }

  function connect() {
    clearTimeout(timer);
    setStatus("connecting", "connecting…");
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/ws");
    ws = socket;
    socket.onopen = () => {
      retry = 250;
      setStatus("connected", "connected");
      if (wanted !== null) hello(wanted);
    };
    socket.onmessage = (event) => {
      let msg;
      try { msg = JSON.parse(event.data); } catch { return; }
      receive(msg);
    };
    socket.onclose = () => closed(socket);
  }

  // Joins as `name`; after a lost connection, first says where the page's history ends.
  function hello(name) {
    if (rejoining && lastSeq !== null && epoch !== null) {
      sendJson({ type: "resume", after: lastSeq, epoch });
    }
    sendJson({ type: "hello", name });
  }

  function closed(socket) {
    if (ws !== socket) return;
    ws = null;
    const was = me;
    setJoined(null);
    if (was !== null) { notice(0, "disconnected"); rejoining = true; }
    if (!stay) { setStatus("disconnected", "disconnected: you left"); return; }
    const wait = Math.round(retry * (0.75 + Math.random() / 2));
    setStatus("disconnected", "disconnected; reconnecting in " + Math.ceil(wait / 1000) + " s");
    timer = setTimeout(connect, wait);
    retry = Math.min(retry * 2, 5000);
  }

  const seen = (seq) => { lastSeq = lastSeq === null ? seq : Math.max(lastSeq, seq); };

  function welcome(msg) {
    limits = msg.limits;
    nameError.textContent = "";
    if (epoch !== null && msg.epoch !== epoch) lastSeq = null; // a new room: its numbers start over
    epoch = msg.epoch;
    wanted = msg.name;
    roster = new Map(msg.members.map((m) => [m.name, m.away]));
    count = msg.online;
    setJoined(msg.name);
    if (roster.size < count) sendJson({ type: "who" });
    resumed = rejoining;
    rejoining = false;
    notice(0, "joined as ", bdi("from", msg.name));
    input.focus();
  }

  function history(msg) {
    if (msg.missed > 0) notice(0, msg.missed + " earlier messages were missed");
    if (msg.chats.length > 0) notice(0, resumed ? "while you were away:" : "earlier messages:");
    for (const c of msg.chats) { chat(c, true); seen(c.seq); }
  }

  function left(msg) {
    const who = bdi("from", msg.name);
    const words = msg.message ? [": ", bdi("text", msg.message)] : [];
    if (msg.reason === "Left") notice(msg.time, who, " left", ...words);
    else notice(msg.time, who, " left (" + msg.text + ")", ...words);
    roster.delete(msg.name);
    count = Math.max(0, count - 1);
    renderMembers();
  }

  function renamed(msg) {
    notice(msg.time, bdi("from", msg.from), " is now ", bdi("from", msg.to));
    const away = roster.get(msg.from) ?? null;
    roster.delete(msg.from);
    roster.set(msg.to, away);
    if (msg.from === me) { me = msg.to; wanted = msg.to; }
    renderMembers();
  }

  function away(msg) {
    if (msg.message !== null) notice(msg.time, bdi("from", msg.name), " is away: ", bdi("text", msg.message));
    else notice(msg.time, bdi("from", msg.name), " is back");
    if (roster.has(msg.name)) roster.set(msg.name, msg.message);
    renderMembers();
  }

  function refusedSend(msg) {
    sendError.textContent = msg.text;
    if (lastSent !== null) {
      lastSent.entry.classList.add("unsent");
      if (input.value === "") input.value = lastSent.text;
      lastSent = null;
    }
  }

  function receive(msg) {
    switch (msg.type) {
      case "welcome": welcome(msg); break;
      case "refused":
        nameError.textContent = msg.text;
        if (!join.classList.contains("joined")) nameInput.focus();
        break;
      case "chat": chat(msg, false); seen(msg.seq); break;
      case "history": history(msg); break;
      case "joined":
        notice(msg.time, bdi("from", msg.name), " joined");
        if (!roster.has(msg.name)) { roster.set(msg.name, null); count += 1; }
        renderMembers();
        break;
      case "left": left(msg); break;
      case "renamed": renamed(msg); break;
      case "away": away(msg); break;
      case "members":
        roster = new Map(msg.members.map((m) => [m.name, m.away]));
        count = roster.size;
        renderMembers();
        break;
      case "error": refusedSend(msg); break;
      case "ping": sendJson({ type: "pong", nonce: msg.nonce }); break;
      case "closing":
        notice(0, "disconnected by server: " + msg.text);
        if (msg.reason === "Left") stay = false;
        break;
    }
  }

  // What a typed line means: a command (/me, /nick, /away, /back, /leave) or a chat. `null`
  // for a command that is not one, with what to say in `sendError`.
  function command(text) {
    const [, word, rest = ""] = text.match(/^\/(\w+)\s*([\s\S]*)$/u) || [];
    if (word === undefined) return { msg: { type: "chat", text }, show: "plain", text };
    const arg = rest.trim();
    switch (word.toLowerCase()) {
      case "me": return arg ? { msg: { type: "chat", text: arg, kind: "action" }, show: "action", text: arg } : null;
      case "nick": return arg ? { msg: { type: "nick", name: arg } } : null;
      case "away": return { msg: { type: "away", message: arg || "away" }, self: arg || "away" };
      case "back": return { msg: { type: "away", message: null }, self: null };
      case "leave": stay = false; return { msg: { type: "leave", message: arg || null } };
      default: return null;
    }
  }

  function submit(text) {
    const cmd = command(text);
    if (!cmd) { sendError.textContent = "commands: /me WHAT, /nick NAME, /away [WHY], /back, /leave [WORDS]"; return false; }
    if (cmd.text !== undefined && limits !== null && bytes(cmd.text) > limits.max_text_bytes) {
      sendError.textContent = "message is longer than " + limits.max_text_bytes + " bytes; not sent";
      return false; // the text stays in the field
    }
    sendError.textContent = "";
    sendJson(cmd.msg);
    if (cmd.show) {
      const li = chat({ from: me, text: cmd.text, kind: cmd.show, time: 0 }, false);
      lastSent = { text, entry: li };
    }
    if ("self" in cmd) { roster.set(me, cmd.self); renderMembers(); }
    return true;
  }

  join.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = nameInput.value.trim();
    if (name === "") { nameError.textContent = "name is empty; choose another"; return; }
    wanted = name;
    stay = true;
    nameError.textContent = "";
    if (ws === null) connect(); else hello(name);
  });

  send.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value;
    if (me === null || text.trim() === "") return;
    if (submit(text)) input.value = "";
    input.focus();
  });

  input.addEventListener("input", () => { sendError.textContent = ""; });

  awayButton.addEventListener("click", () => {
    if (me !== null) submit(roster.get(me) ? "/back" : "/away");
  });

  if ("Notification" in window) {
    notifyButton.hidden = false;
    const show = () => {
      notifyButton.setAttribute("aria-pressed", notify ? "true" : "false");
      notifyButton.textContent = notify ? "Notifying on mention" : "Notify on mention";
    };
    // The permission is asked for only here, when the member asks for notifications.
    notifyButton.addEventListener("click", async () => {
      if (notify) { notify = false; show(); return; }
      const granted = Notification.permission === "granted" ||
        (await Notification.requestPermission()) === "granted";
      notify = granted;
      if (!granted) sendError.textContent = "notifications are blocked in this browser";
      show();
    });
  }

  function showMembers(open) {
    document.body.classList.toggle("show-members", open);
    membersToggle.setAttribute("aria-expanded", open ? "true" : "false");
  }
  membersToggle.addEventListener("click", () => showMembers(!document.body.classList.contains("show-members")));
  // Escape closes the members panel on a phone, and the focus goes back to its button.
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && document.body.classList.contains("show-members")) {
      showMembers(false);
      membersToggle.focus();
    }
  });

  newMessages.addEventListener("click", () => {
    messages.lastElementChild?.scrollIntoView({ block: "end" });
    newMessages.hidden = true;
    input.focus();
  });
  log.addEventListener("scroll", () => { if (atBottom()) newMessages.hidden = true; });

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) { unread = 0; document.title = title; }
  });

  renderMembers();
  connect();
  nameInput.focus();
})();
