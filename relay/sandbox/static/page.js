// The sandbox's chat page: renders the emulated Discord server and acts in it as any member.
//
// Data comes from the page API (/sandbox/api/...) as views the server prepared (names already resolved);
// changes come over the websocket /sandbox/live as small notices: "dispatch" (a gateway event happened: fetch
// what it touched) and "request" (the bridge made a REST call: add it to the right-hand panel). Every change
// made here (post, reply, upload, delete, join, leave, nickname, timeout, kick) goes through the emulator, which
// sends the bridge the gateway events real Discord would. User text is put in the page with textContent only.

"use strict";

const API = "/sandbox/api";
const RECONNECT_MS = 1000;
const TIMEOUT_MINUTES = 10;

const page = {
  world: null,          // /state: guild, channels, roles, members, outside
  channelId: localStorage.getItem("sandbox.channel"),
  me: localStorage.getItem("sandbox.me"),
  replyTo: null,        // {id, author} of the message being replied to
  file: null,           // the File attached to the next message
  messages: [],
  pending: {},          // what a notice asked to reload: {state: true, messages: true}
};

const $ = (id) => document.getElementById(id);

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("data-")) node.setAttribute(name, value);
    else node[name] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// ------------------------------------------------------------------ the page API

async function call(method, path, body) {
  const options = { method, headers: {} };
  if (body instanceof FormData) {
    options.body = body;
  } else if (body !== undefined) {
    options.headers["content-type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(API + path, options);
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(answer.message || `${response.status} ${response.statusText}`);
  return answer;
}

function showError(error) {
  $("composer-error").textContent = error ? String(error.message || error) : "";
}

async function act(method, path, body) {
  showError(null);
  try {
    return await call(method, path, body);
  } catch (error) {
    showError(error);
    return null;
  }
}

// ------------------------------------------------------------------ loading

async function loadState() {
  page.world = await call("GET", "/state");
  const channels = page.world.channels;
  if (!channels.some((c) => c.id === page.channelId)) page.channelId = channels.length ? channels[0].id : null;
  const speakers = page.world.members.filter((m) => !m.bot);
  if (!speakers.some((m) => m.id === page.me)) page.me = speakers.length ? speakers[0].id : null;
  renderSidebar();
  renderHeader();
}

async function loadMessages() {
  if (!page.channelId) return;
  const channelId = page.channelId;
  const messages = await call("GET", `/channels/${channelId}/messages`);
  if (channelId !== page.channelId) return; // the user switched meanwhile
  page.messages = messages;
  renderMessages();
}

async function loadRequests() {
  const entries = await call("GET", "/requests");
  $("requests").replaceChildren();
  for (const entry of entries) addRequest(entry);
}

// Several notices in a row reload once.
function reload(what) {
  const first = Object.keys(page.pending).length === 0;
  page.pending[what] = true;
  if (!first) return;
  setTimeout(async () => {
    const pending = page.pending;
    page.pending = {};
    try {
      if (pending.state) await loadState();
      if (pending.messages || pending.state) await loadMessages();
    } catch (error) {
      showError(error);
    }
  }, 30);
}

// ------------------------------------------------------------------ live updates

function connectLive() {
  const socket = new WebSocket(`ws://${location.host}/sandbox/live`);
  const status = $("live-status");
  socket.onopen = async () => {
    status.textContent = "live";
    status.className = "online";
    try {
      await loadState();
      await loadMessages();
      await loadRequests();
    } catch (error) {
      showError(error);
    }
  };
  socket.onmessage = (event) => {
    const notice = JSON.parse(event.data);
    if (notice.type === "request") {
      addRequest(notice.entry);
    } else if (notice.type === "dispatch") {
      if (notice.name.startsWith("GUILD_") || notice.name.startsWith("CHANNEL_")) reload("state");
      if (notice.channel_id === page.channelId || notice.name.startsWith("GUILD_MEMBER")) reload("messages");
    }
  };
  socket.onclose = () => {
    status.textContent = "disconnected — reconnecting…";
    status.className = "offline";
    setTimeout(connectLive, RECONNECT_MS);
  };
}

// ------------------------------------------------------------------ left: channels and members

function renderSidebar() {
  const world = page.world;
  $("guild-name").textContent = world.guild.name;
  document.title = `${world.guild.name} — discord-mirai-relay sandbox`;

  $("channels").replaceChildren(
    ...world.channels.map((channel) => {
      const item = element("li", { "data-channel-id": channel.id, title: channel.topic }, channel.name);
      if (channel.id === page.channelId) item.classList.add("current");
      item.addEventListener("click", () => switchChannel(channel.id));
      return item;
    }),
  );

  $("members").replaceChildren(...world.members.map(memberItem));
  $("outside").replaceChildren(
    ...world.outside.map((user) =>
      element(
        "li",
        { "data-user-id": user.id },
        element("span", { class: "member-name" }, user.name, element("span", { class: "username" }, user.username)),
        element("div", { class: "member-actions" }, button("join", "Join", () => memberAction(user.id, "join"))),
      ),
    ),
  );

  const select = $("me");
  select.replaceChildren(
    ...world.members
      .filter((m) => !m.bot)
      .map((m) => element("option", { value: m.id, selected: m.id === page.me }, m.name)),
  );
}

function timedOut(member) {
  return member.timeout_until !== null && new Date(member.timeout_until) > new Date();
}

function memberItem(member) {
  const name = element("span", { class: "member-name" }, member.name);
  if (member.name !== member.username) name.append(element("span", { class: "username" }, member.username));
  if (member.bot) name.append(element("span", { class: "badge" }, "BOT"));
  for (const roleId of member.roles) {
    const role = page.world.roles[roleId];
    if (role) name.append(element("span", { class: "badge role" }, role));
  }
  if (timedOut(member)) {
    const until = new Date(member.timeout_until).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    name.append(element("span", { class: "badge timeout", title: member.timeout_until }, `timed out until ${until}`));
  }
  const actions = element("div", { class: "member-actions" });
  actions.append(button("nick", "Nickname", () => changeNick(member)));
  if (!member.bot) {
    if (timedOut(member)) {
      actions.append(button("untimeout", "End timeout", () => memberAction(member.id, "timeout", { minutes: 0 })));
    } else {
      actions.append(
        button("timeout", `Time out ${TIMEOUT_MINUTES} min`, () =>
          memberAction(member.id, "timeout", { minutes: TIMEOUT_MINUTES }),
        ),
      );
    }
    actions.append(button("kick", "Kick", () => memberAction(member.id, "kick"), "danger"));
    actions.append(button("leave", "Leave", () => memberAction(member.id, "leave")));
  }
  return element("li", { "data-user-id": member.id }, name, actions);
}

function button(action, label, onClick, extraClass = "") {
  const node = element("button", { type: "button", "data-action": action, class: extraClass }, label);
  node.addEventListener("click", onClick);
  return node;
}

// Moderation is done by the member picked in the composer ("as ..."), like a moderator on Discord.
function memberAction(userId, what, extra = {}) {
  return act("POST", `/members/${userId}/${what}`, { actor_id: page.me, ...extra });
}

function changeNick(member) {
  const nick = window.prompt(`New nickname for ${member.username} (empty: none)`, member.nick || "");
  if (nick !== null) memberAction(member.id, "nick", { nick });
}

function switchChannel(channelId) {
  page.channelId = channelId;
  localStorage.setItem("sandbox.channel", channelId);
  clearComposer();
  renderSidebar();
  renderHeader();
  page.messages = [];
  renderMessages();
  loadMessages().catch(showError);
}

function renderHeader() {
  const channel = page.world.channels.find((c) => c.id === page.channelId);
  $("channel-name").textContent = channel ? channel.name : "";
  $("channel-topic").textContent = channel ? channel.topic : "";
  $("composer-text").placeholder = channel ? `Message #${channel.name} — try: echo hi, members, help` : "";
}

// ------------------------------------------------------------------ middle: messages

// <@id> and <@!id> are user mentions, <@&id> role mentions; @everyone and @here ping everyone.
const MARKUP = /(<@!?\d+>|<@&\d+>|@everyone|@here)/g;

function renderContent(text, names) {
  const nodes = [];
  for (const piece of text.split(MARKUP)) {
    if (!piece) continue;
    let match;
    if ((match = /^<@!?(\d+)>$/.exec(piece))) {
      nodes.push(element("span", { class: "mention" }, "@" + (names[match[1]] || "unknown-user")));
    } else if ((match = /^<@&(\d+)>$/.exec(piece))) {
      nodes.push(element("span", { class: "mention" }, "@" + (page.world.roles[match[1]] || "deleted-role")));
    } else if (piece === "@everyone" || piece === "@here") {
      nodes.push(element("span", { class: "mention" }, piece));
    } else {
      nodes.push(document.createTextNode(piece));
    }
  }
  return nodes;
}

function renderMessage(message) {
  const item = element("li", { class: "message", "data-message-id": message.id });
  if (message.bot) item.classList.add("from-bot");
  if (message.system) item.classList.add("system");
  if (page.replyTo && page.replyTo.id === message.id) item.classList.add("replying");

  if (message.reply) {
    const reply = element("div", { class: "reply", "data-quoted-id": message.reply.id || "" });
    if (message.reply.deleted) {
      reply.append("Original message was deleted");
    } else {
      const quoted = message.reply.content
        ? renderContent(message.reply.content, message.names)
        : [message.reply.attachments ? "🖼 an attachment" : ""];
      reply.append(element("span", { class: "quoted-author" }, "↪ " + message.reply.author), ...quoted);
    }
    item.append(reply);
  }

  const time = new Date(message.timestamp).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  item.append(
    element(
      "div",
      { class: "head" },
      element("span", { class: "author" }, message.author),
      message.bot ? element("span", { class: "badge" }, "BOT") : null,
      element("span", { class: "time", title: message.timestamp }, time),
    ),
  );
  const content = element("div", { class: "content" });
  if (message.system) content.append(`${message.author} ${message.system}`);
  else content.append(...renderContent(message.content, message.names));
  item.append(content);

  for (const attachment of message.attachments) {
    if (attachment.image) {
      item.append(element("img", { class: "attachment", src: attachment.url, alt: attachment.filename }));
    } else {
      item.append(element("a", { class: "attachment", href: attachment.url, target: "_blank" }, attachment.filename));
    }
  }

  if (!message.system) {
    item.append(
      element(
        "div",
        { class: "tools" },
        button("reply", "Reply", () => startReply(message)),
        button("delete", "Delete", () => deleteMessage(message), "danger"),
      ),
    );
  }
  return item;
}

function renderMessages() {
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  list.replaceChildren(...page.messages.map(renderMessage));
  if (atBottom) list.scrollTop = list.scrollHeight;
  for (const image of list.querySelectorAll("img.attachment")) {
    image.addEventListener("load", () => {
      if (atBottom) list.scrollTop = list.scrollHeight;
    });
  }
}

function deleteMessage(message) {
  return act("DELETE", `/channels/${page.channelId}/messages/${message.id}?actor_id=${page.me}`);
}

// ------------------------------------------------------------------ the composer

function startReply(message) {
  page.replyTo = { id: message.id, author: message.author };
  renderComposerContext();
  renderMessages();
  $("composer-text").focus();
}

function clearComposer() {
  page.replyTo = null;
  page.file = null;
  $("file-input").value = "";
  renderComposerContext();
}

function renderComposerContext() {
  $("replying-to").textContent = page.replyTo ? `Replying to ${page.replyTo.author}` : "";
  $("attached").textContent = page.file ? page.file.name : "";
  $("composer-context").hidden = !page.replyTo && !page.file;
}

// "@alice" or "@Caz" (a username, display name or nickname without spaces) becomes the mention <@id>.
function withMentions(text) {
  return text.replace(/(^|\s)@([\w.-]+)/g, (whole, space, name) => {
    const wanted = name.toLowerCase();
    const member = page.world.members.find((m) =>
      [m.username, m.name, m.nick].some((n) => n && n.toLowerCase() === wanted),
    );
    return member ? `${space}<@${member.id}>` : whole;
  });
}

async function send(event) {
  event.preventDefault();
  const input = $("composer-text");
  const content = withMentions(input.value);
  if (!content.trim() && !page.file) return;
  let body;
  if (page.file) {
    body = new FormData();
    body.append("author_id", page.me);
    body.append("content", content);
    if (page.replyTo) body.append("reply_to", page.replyTo.id);
    body.append("file", page.file, page.file.name);
  } else {
    body = { author_id: page.me, content, reply_to: page.replyTo ? page.replyTo.id : null };
  }
  const sent = await act("POST", `/channels/${page.channelId}/messages`, body);
  if (sent) {
    input.value = "";
    clearComposer();
    const list = $("messages");
    list.scrollTop = list.scrollHeight;
  }
}

// ------------------------------------------------------------------ right: what the bridge did

function addRequest(entry) {
  const ok = entry.status !== null && entry.status < 400;
  const when = new Date(entry.time * 1000).toLocaleTimeString();
  const item = element(
    "li",
    { "data-seq": String(entry.seq), "data-route": entry.route, title: entry.route },
    element(
      "div",
      { class: "line" },
      element("span", { class: "method" }, entry.method),
      element("span", { class: "path" }, entry.path),
      element("span", { class: `status ${ok ? "ok" : "error"}` }, entry.status === null ? "—" : String(entry.status)),
    ),
    element("div", { class: "result" }, entry.result),
  );
  if (entry.sent || entry.files.length || entry.reason) {
    const details = element("details", {}, element("summary", {}, `sent at ${when}`));
    if (entry.reason) details.append(element("div", { class: "result" }, `audit log reason: ${entry.reason}`));
    if (entry.files.length) details.append(element("div", { class: "result" }, `files: ${entry.files.join(", ")}`));
    if (entry.sent) details.append(element("pre", {}, prettyJson(entry.sent)));
    item.append(details);
  } else {
    item.append(element("div", { class: "when" }, when));
  }
  $("requests").prepend(item);
}

function prettyJson(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

// ------------------------------------------------------------------ start

document.addEventListener("DOMContentLoaded", () => {
  $("composer").addEventListener("submit", send);
  $("composer-clear").addEventListener("click", () => {
    clearComposer();
    renderMessages();
  });
  $("file-input").addEventListener("change", (event) => {
    page.file = event.target.files[0] || null;
    renderComposerContext();
  });
  $("me").addEventListener("change", (event) => {
    page.me = event.target.value;
    localStorage.setItem("sandbox.me", page.me);
  });
  connectLive();
});
