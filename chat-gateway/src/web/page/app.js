// The chat room in a browser. Served by chat-server at /app.js; the page's Content-Security-Policy
// allows this script and nothing else. Everything other people wrote is inserted with
// textContent, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const status = $("status"), join = $("join"), nameInput = $("name"), nameError = $("name-error");
  const messages = $("messages"), send = $("send"), input = $("message"), sendError = $("send-error");
  const members = $("members"), online = $("online");

  let ws = null;
  let me = null;          // the name the room registered, while joined
  let wanted = null;      // the name to (re)join with
  let limits = null;
  let roster = [];
  let count = 0;
  let retry = 250;        // reconnect backoff, ms
  let timer = null;
  let stay = true;        // false once the member chose to leave
  let lastSent = null;    // the last line sent, and its entry in the list, for a refused send

  const bytes = (s) => new TextEncoder().encode(s).length;
  const sendJson = (msg) => { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg)); };

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  function line(kind, from, text) {
    const li = document.createElement("li");
    li.className = kind;
    const time = document.createElement("time");
    const now = new Date();
    time.dateTime = now.toISOString();
    time.textContent = now.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    li.append(time);
    if (from !== null) {
      const who = document.createElement("span");
      who.className = "from";
      who.textContent = from;
      li.append(who);
    }
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    li.append(body);
    const atBottom = messages.scrollHeight - messages.scrollTop - messages.clientHeight < 40;
    messages.append(li);
    if (atBottom || kind === "mine") li.scrollIntoView({ block: "end" });
    return li;
  }

  function renderMembers() {
    roster.sort((a, b) => a.localeCompare(b));
    members.replaceChildren(...roster.map((name) => {
      const li = document.createElement("li");
      li.textContent = name;
      if (name === me) li.className = "me";
      return li;
    }));
    online.textContent = String(count);
  }

  function setJoined(name) {
    me = name;
    join.classList.toggle("joined", name !== null);
    input.disabled = name === null;
    input.placeholder = name === null ? "Join to chat" : "Message (Enter to send)";
    if (name === null) { roster = []; count = 0; renderMembers(); }
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
      if (wanted !== null) sendJson({ type: "hello", name: wanted });
    };
    socket.onmessage = (event) => {
      let msg;
      try { msg = JSON.parse(event.data); } catch { return; }
      receive(msg);
    };
    socket.onclose = () => {
      if (ws !== socket) return;
      ws = null;
      const was = me;
      setJoined(null);
      if (was !== null) line("notice", null, "disconnected");
      if (!stay) { setStatus("disconnected", "disconnected: you left"); return; }
      const wait = Math.round(retry * (0.75 + Math.random() / 2));
      setStatus("disconnected", "disconnected; reconnecting in " + Math.ceil(wait / 1000) + " s");
      timer = setTimeout(connect, wait);
      retry = Math.min(retry * 2, 5000);
    };
  }

  function receive(msg) {
    switch (msg.type) {
      case "welcome":
        limits = msg.limits;
        nameError.textContent = "";
        wanted = msg.name;
        setJoined(msg.name);
        roster = msg.members.slice();
        count = msg.online;
        renderMembers();
        if (roster.length < count) sendJson({ type: "who" });
        line("notice", null, "joined as " + msg.name);
        input.focus();
        break;
      case "refused":
        nameError.textContent = msg.text;
        if (!join.classList.contains("joined")) nameInput.focus();
        break;
      case "chat":
        line("chat", msg.from, msg.text);
        break;
      case "history":
        // What was said before joining, set apart from live messages.
        if (msg.missed > 0) line("notice", null, msg.missed + " earlier messages were missed");
        for (const c of msg.chats) line("chat earlier", c.from, "[earlier] " + c.text);
        break;
      case "joined":
        line("notice", null, msg.name + " joined");
        if (!roster.includes(msg.name)) roster.push(msg.name);
        count += 1;
        renderMembers();
        break;
      case "left":
        line("notice", null, msg.name + " left (" + msg.text + ")");
        roster = roster.filter((n) => n !== msg.name);
        count = Math.max(0, count - 1);
        renderMembers();
        break;
      case "members":
        roster = msg.names.slice();
        count = roster.length;
        renderMembers();
        break;
      case "error":
        sendError.textContent = msg.text;
        if (lastSent !== null) {
          lastSent.entry.classList.add("unsent");
          if (input.value === "") input.value = lastSent.text;
          lastSent = null;
        }
        break;
      case "ping":
        sendJson({ type: "pong", nonce: msg.nonce });
        break;
      case "closing":
        line("notice", null, "disconnected by server: " + msg.text);
        if (msg.reason === "Left") stay = false;
        break;
    }
  }

  join.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = nameInput.value.trim();
    if (name === "") { nameError.textContent = "name is empty; choose another"; return; }
    wanted = name;
    stay = true;
    nameError.textContent = "";
    if (ws === null) connect(); else sendJson({ type: "hello", name });
  });

  send.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value;
    if (me === null || text.trim() === "") return;
    if (limits !== null && bytes(text) > limits.max_text_bytes) {
      sendError.textContent = "message is longer than " + limits.max_text_bytes + " bytes; not sent";
      return; // the text stays in the field
    }
    sendError.textContent = "";
    sendJson({ type: "chat", text });
    lastSent = { text, entry: line("chat mine", me, text) };
    input.value = "";
    input.focus();
  });

  input.addEventListener("input", () => { sendError.textContent = ""; });

  connect();
  nameInput.focus();
})();
