/*
 * The native floor under the bridge's CPU per relayed frame (make bench-fleet with BENCH_FLOOR=c): what the
 * same relay as bench/relay-floor.ts costs written in C on epoll, with no runtime at all. It accepts every
 * agent on canrelay's uplink path, answers hello with a welcome, and turns each UP batch into a DOWN batch
 * for the other dongle of its pair (fleet-0000 <-> fleet-0001, ...): the kind byte, a DOWN number and the
 * origin are written in front of the UP batch's own bytes (core/uplink/frame-codec.ts's layout). It does
 * not validate the frames, which makes it a floor of the kernel's sockets and RFC 6455 framing alone: what
 * no relay of this wire format on this machine can go below, whatever its language.
 *
 *   cc -O2 -o relay-floor bench/relay-floor.c -lcrypto    (the bench builds it into its temporary dir)
 *
 * Listens on 127.0.0.1, an ephemeral port (the bench finds it through /proc, as for the bridge). One read
 * per readable socket, one write per DOWN message; what a socket does not take is kept and written when it
 * is writable again, so nothing is dropped. Bench code: a malformed peer is disconnected, never trusted.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define UPLINK_PATH "/api/v1/agents/connect"
#define PROTOCOL_VERSION 2
#define KIND_UP 1
#define KIND_DOWN 2
/* core/uplink/frame-codec.ts: kind u8, batch u48, clock offset f64, clock error f64; the origin follows. */
#define UP_HEADER 23
#define MAX_MESSAGE (32 + 256 * 17 + 4096 * (20 + 64))
#define MAX_DONGLES 65536

struct conn {
  int fd;
  int upgraded;
  int number; /* the digits at the end of the dongle id, -1 before hello */
  char dongle[256];
  uint8_t dongle_len;
  uint64_t next_down;
  uint8_t *in;
  size_t in_len, in_cap;
  uint8_t *out; /* what the socket did not take yet */
  size_t out_len, out_cap;
};

static struct conn *by_number[MAX_DONGLES];
static int epfd;

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void grow(uint8_t **buf, size_t *cap, size_t need) {
  if (need <= *cap) return;
  size_t c = *cap ? *cap : 4096;
  while (c < need) c *= 2;
  uint8_t *b = realloc(*buf, c);
  if (!b) die("realloc");
  *buf = b;
  *cap = c;
}

static void close_conn(struct conn *c) {
  if (c->number >= 0 && by_number[c->number] == c) by_number[c->number] = NULL;
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c->in);
  free(c->out);
  free(c);
}

/* Writes now what the socket takes, keeps the rest (in order) for EPOLLOUT. */
static void send_bytes(struct conn *c, const uint8_t *p, size_t n) {
  if (c->out_len == 0) {
    ssize_t w = write(c->fd, p, n);
    if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return;
    if (w > 0) {
      p += w;
      n -= (size_t)w;
    }
    if (n == 0) return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
  }
  grow(&c->out, &c->out_cap, c->out_len + n);
  memcpy(c->out + c->out_len, p, n);
  c->out_len += n;
}

/* One unmasked server frame, header and payload in one write. */
static void send_frame(struct conn *c, int opcode, const uint8_t *head, size_t head_len, const uint8_t *body, size_t body_len) {
  static uint8_t buf[10 + MAX_MESSAGE + 300];
  size_t n = head_len + body_len, at;
  buf[0] = 0x80 | opcode;
  if (n < 126) {
    buf[1] = (uint8_t)n;
    at = 2;
  } else {
    buf[1] = 126;
    buf[2] = (uint8_t)(n >> 8);
    buf[3] = (uint8_t)n;
    at = 4;
  }
  memcpy(buf + at, head, head_len);
  memcpy(buf + at + head_len, body, body_len);
  send_bytes(c, buf, at + n);
}

static void on_hello(struct conn *c, const char *text, size_t len) {
  char msg[600];
  if (len >= sizeof msg) return;
  memcpy(msg, text, len);
  msg[len] = 0;
  if (!strstr(msg, "\"t\":\"hello\"")) return; /* acks and the rest: ignored */
  const char *d = strstr(msg, "\"dongle\":\"");
  if (!d) return;
  d += 10;
  const char *e = strchr(d, '"');
  if (!e || e - d == 0 || e - d > 255) return;
  c->dongle_len = (uint8_t)(e - d);
  memcpy(c->dongle, d, c->dongle_len);
  c->dongle[c->dongle_len] = 0;
  const char *digits = c->dongle + c->dongle_len;
  while (digits > c->dongle && digits[-1] >= '0' && digits[-1] <= '9') digits--;
  c->number = atoi(digits) % MAX_DONGLES;
  by_number[c->number] = c;
  char welcome[600];
  int n = snprintf(welcome, sizeof welcome, "{\"t\":\"welcome\",\"protocol\":%d,\"dongle\":\"%s\",\"event_ack\":0,\"group\":\"floor\",\"relay_epoch\":\"floor\"}", PROTOCOL_VERSION, c->dongle);
  send_frame(c, 1, (const uint8_t *)welcome, (size_t)n, NULL, 0);
}

/* UP -> the pair's DOWN: kind, its next number, the UP clock, the origin, then the UP batch from its bus table on. */
static void on_batch(struct conn *c, const uint8_t *p, size_t len) {
  if (c->number < 0 || len < UP_HEADER || p[0] != KIND_UP) return;
  struct conn *to = by_number[c->number ^ 1];
  if (!to) return;
  uint8_t head[UP_HEADER + 1 + 255];
  uint64_t b = ++to->next_down;
  head[0] = KIND_DOWN;
  for (int i = 0; i < 6; i++) head[1 + i] = (uint8_t)(b >> (8 * (5 - i)));
  memcpy(head + 7, p + 7, 16);
  head[UP_HEADER] = c->dongle_len;
  memcpy(head + UP_HEADER + 1, c->dongle, c->dongle_len);
  send_frame(to, 2, head, UP_HEADER + 1 + c->dongle_len, p + UP_HEADER, len - UP_HEADER);
}

/* Complete frames off the front of what arrived; 0 when the connection must close. */
static int parse_frames(struct conn *c) {
  size_t at = 0;
  for (;;) {
    uint8_t *f = c->in + at;
    size_t have = c->in_len - at, h = 2, n;
    if (have < 2) break;
    int opcode = f[0] & 0x0f, masked = f[1] & 0x80;
    n = f[1] & 0x7f;
    if (n == 126) {
      if (have < 4) break;
      n = ((size_t)f[2] << 8) | f[3];
      h = 4;
    } else if (n == 127) {
      if (have < 10) break;
      n = 0;
      for (int i = 0; i < 8; i++) n = (n << 8) | f[2 + i];
      h = 10;
    }
    if (n > MAX_MESSAGE) return 0;
    uint8_t *mask = f + h;
    if (masked) h += 4;
    if (have < h + n) break;
    uint8_t *payload = f + h;
    if (masked)
      for (size_t i = 0; i < n; i++) payload[i] ^= mask[i & 3];
    if (opcode == 2) on_batch(c, payload, n);
    else if (opcode == 1) on_hello(c, (const char *)payload, n);
    else if (opcode == 8) return 0;
    else if (opcode == 9) send_frame(c, 10, payload, n, NULL, 0);
    at += h + n;
  }
  memmove(c->in, c->in + at, c->in_len - at);
  c->in_len -= at;
  return 1;
}

/* The HTTP request: the upgrade on the uplink path, a 404 for anything else. 0 when the connection must close. */
static int parse_request(struct conn *c) {
  c->in[c->in_len] = 0;
  char *end = strstr((char *)c->in, "\r\n\r\n");
  if (!end) return c->in_len < 8192;
  char *key = strcasestr((char *)c->in, "\r\nsec-websocket-key:");
  if (strncmp((char *)c->in, "GET " UPLINK_PATH " ", strlen("GET " UPLINK_PATH " ")) != 0 || !key || key > end) {
    const char *no = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    send_bytes(c, (const uint8_t *)no, strlen(no));
    return 0;
  }
  key += strlen("\r\nsec-websocket-key:");
  while (*key == ' ') key++;
  char *key_end = strstr(key, "\r\n");
  char joined[200];
  int n = snprintf(joined, sizeof joined, "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", (int)(key_end - key), key);
  if (n <= 0 || (size_t)n >= sizeof joined) return 0;
  uint8_t digest[SHA_DIGEST_LENGTH];
  SHA1((const uint8_t *)joined, (size_t)n, digest);
  char accept[64];
  EVP_EncodeBlock((uint8_t *)accept, digest, SHA_DIGEST_LENGTH);
  char reply[300];
  int r = snprintf(reply, sizeof reply, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
  send_bytes(c, (const uint8_t *)reply, (size_t)r);
  size_t used = (size_t)(end + 4 - (char *)c->in);
  memmove(c->in, c->in + used, c->in_len - used);
  c->in_len -= used;
  c->upgraded = 1;
  return parse_frames(c);
}

static void on_readable(struct conn *c) {
  grow(&c->in, &c->in_cap, c->in_len + 65536 + 1);
  ssize_t r = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len - 1);
  if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) return close_conn(c);
  if (r < 0) return;
  c->in_len += (size_t)r;
  if (!(c->upgraded ? parse_frames(c) : parse_request(c))) close_conn(c);
}

static void on_writable(struct conn *c) {
  ssize_t w = write(c->fd, c->out, c->out_len);
  if (w < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) close_conn(c);
    return;
  }
  memmove(c->out, c->out + w, c->out_len - (size_t)w);
  c->out_len -= (size_t)w;
  if (c->out_len == 0) {
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
  }
}

int main(void) {
  struct rlimit lim;
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (lfd < 0) die("socket");
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
  if (listen(lfd, 4096) < 0) die("listen");
  epfd = epoll_create1(0);
  struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
  struct epoll_event events[256];
  for (;;) {
    int n = epoll_wait(epfd, events, 256, -1);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; i++) {
      struct conn *c = events[i].data.ptr;
      if (!c) {
        int fd;
        while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          int one = 1;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* as Node's sockets */
          struct conn *nc = calloc(1, sizeof *nc);
          if (!nc) die("calloc");
          nc->fd = fd;
          nc->number = -1;
          struct epoll_event ev = {.events = EPOLLIN, .data.ptr = nc};
          epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
        }
        continue;
      }
      /* Only c's own handler closes c, and each socket is in the list once: no event names a freed conn.
         Level-triggered: input left while output drains is read on the next round. */
      if (events[i].events & EPOLLOUT) on_writable(c);
      else if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
    }
  }
}
