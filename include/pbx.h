/* SPDX-License-Identifier: MIT */
/*
 * libpbx: the steps of a TCP conversation (address, listen, dial, accept,
 * read and write, relay, spawn) as small calls, plus one event loop.
 *
 * Conventions, for every call below unless it says otherwise:
 * - A return value >= 0 is success (an fd, a count or 0); a negative value is
 *   a negated errno value (-ECONNREFUSED) or, for name resolution, one of the
 *   PBX_EAI_* codes. pbx_strerror() describes either.
 * - Every fd the library creates is close-on-exec.
 * - The library never prints, never exits and never installs a signal
 *   handler; where it reports progress it calls the caller's trace callback.
 * - Pointers passed in are borrowed for the duration of the call unless the
 *   comment says the library keeps them.
 */
#ifndef PBX_H
#define PBX_H

#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define PBX_VERSION "0.1.0"

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

/*
 * Resolver failures, disjoint from -errno values (errno values stay far
 * below 10000).
 */
enum {
	PBX_EAI_NONAME = -10001, /* the name does not exist */
	PBX_EAI_AGAIN = -10002,  /* temporary resolver failure */
	PBX_EAI_FAIL = -10003,   /* permanent resolver failure */
	PBX_EAI_FAMILY = -10004, /* the name has no address of that family */
	PBX_EAI_OTHER = -10005,  /* any other resolver failure */
};

/* A static description of an error code returned by libpbx (never NULL). */
const char *pbx_strerror(int err);

/* Trace callback: one line of narration, without a trailing newline. */
typedef void (*pbx_trace_cb)(void *arg, const char *line);

/* ------------------------------------------------------------------ */
/* Addresses                                                           */
/* ------------------------------------------------------------------ */

/*
 * A TCP endpoint, IPv4 or IPv6. Deliberately not a sockaddr_storage (128
 * bytes): a connection record holds two of these, and 32 bytes each keeps
 * records small when a server holds tens of thousands of them.
 */
struct pbx_addr {
	union {
		struct sockaddr sa;
		struct sockaddr_in in4;
		struct sockaddr_in6 in6;
	} u;
	socklen_t len; /* 0 for "no address" */
};

/* "[ffff:...:ffff%ifname]:65535" plus room: enough for any pbx_addr. */
#define PBX_ADDR_STRLEN 80

/*
 * The text of an ADDRESS argument split into its parts, before any name is
 * resolved. host is "" for the ":PORT" form (every local address).
 */
struct pbx_hostport {
	char host[256];
	uint16_t port;
	bool has_port;  /* false only with PBX_PARSE_PORT_OPTIONAL */
	bool bracketed; /* host was written as [IPV6] */
};

/* What part of a parsed text was wrong (filled by the _parse calls). */
struct pbx_parse_error {
	const char *part;   /* static: "port", "host", "address", ... */
	const char *reason; /* static: "is out of range 0-65535", ... */
	size_t offset;      /* where the offending part starts in the text */
	size_t length;      /* and how long it is (0 when it is missing) */
};

enum {
	PBX_PARSE_PORT_OPTIONAL = 1 << 0, /* "HOST" alone is allowed (port 0) */
};

/*
 * Split "HOST:PORT", "[IPV6]:PORT" or ":PORT" into host and port. The port
 * is decimal 0-65535 with no sign, spaces or leading zeros ("0" is fine).
 * HOST is one of:
 * - an IPv4 address as a dotted quad: four decimals 0-255 with no leading
 *   zeros, what inet_pton(AF_INET) accepts;
 * - an IPv6 address (RFC 4291: what inet_pton(AF_INET6) accepts), always
 *   in brackets, optionally with a scope, the name of an interface:
 *   [fe80::1%lo];
 * - a host name: letters, digits, '-', '_' and '.'.
 * Text made only of digits, dots and 0x hex forms is an IPv4 address or
 * nothing: 127.1, 0177.0.0.1, 0x7f.0.0.1, 0x7f000001, 2130706433 and
 * 256.1.1.1 are refused ("is not a dotted-quad IPv4 address"), never left
 * to the resolver, whose inet_aton would read most of them as 127.0.0.1.
 * A name that starts with digits (3com, 1password.com) is a name.
 * Returns 0 or -EINVAL, with err (may be NULL) saying which part is wrong.
 * Resolves nothing.
 */
int pbx_hostport_parse(const char *text, int flags, struct pbx_hostport *out,
    struct pbx_parse_error *err);

/*
 * Parse a numeric IP address (no port, no brackets), strictly: IPv4 must be
 * a dotted quad (four decimals 0-255, no leading zeros: inet_pton, never
 * inet_aton), IPv6 any RFC 4291 form, optionally with %IFNAME (an
 * interface's name, not its number; its index becomes the scope id).
 * Returns 0 or -EINVAL. The port of *out is set to port.
 */
int pbx_addr_parse_ip(const char *ip, uint16_t port, struct pbx_addr *out);

enum {
	PBX_RESOLVE_PASSIVE = 1 << 0, /* "" means every local address */
	PBX_RESOLVE_NUMERIC = 1 << 1, /* never ask the resolver */
};

/*
 * Turn a host and port into up to max addresses, in the resolver's order.
 * A numeric host never reaches the resolver, nor does a host that is
 * neither an IP address (pbx_addr_parse_ip) nor a name as
 * pbx_hostport_parse accepts it (127.1, 0x7f000001): that is -EINVAL, as
 * is a bracketed host that is not IPv6. With PBX_RESOLVE_PASSIVE, the
 * empty host gives "::" (a dual-stack listener) first and "0.0.0.0" second.
 * Without it, the empty host is -EINVAL. May block on DNS.
 * Returns the number of addresses (>= 1) or a negative code (PBX_EAI_*).
 */
int pbx_addr_resolve(
    const struct pbx_hostport *hp, int flags, struct pbx_addr *out, size_t max);

/* Family (AF_INET or AF_INET6) and port of an address. */
int pbx_addr_family(const struct pbx_addr *a);
uint16_t pbx_addr_port(const struct pbx_addr *a);
void pbx_addr_set_port(struct pbx_addr *a, uint16_t port);

/* True for 0.0.0.0 and ::. */
bool pbx_addr_is_any(const struct pbx_addr *a);

/*
 * Format "1.2.3.4:80" or "[::1]:80" into buf (size >= PBX_ADDR_STRLEN is
 * always enough). IPv6 follows RFC 5952; an IPv4-mapped IPv6 address
 * (::ffff:1.2.3.4) is written as the plain IPv4 address it carries.
 * Returns the length written, or -ENOSPC if buf is too small.
 */
int pbx_addr_format(const struct pbx_addr *a, char *buf, size_t size);

/* The same without the port and without brackets: "1.2.3.4", "::1". */
int pbx_addr_format_ip(const struct pbx_addr *a, char *buf, size_t size);

/* Local and remote address of a connected socket. */
int pbx_addr_local(int fd, struct pbx_addr *out);
int pbx_addr_remote(int fd, struct pbx_addr *out);

/* ------------------------------------------------------------------ */
/* Sockets: listen, dial, accept                                       */
/* ------------------------------------------------------------------ */

struct pbx_listen_opts {
	int backlog;    /* <= 0: SOMAXCONN */
	bool reuseport; /* SO_REUSEPORT, for several listeners on a port */
	bool v6only;    /* on "::": IPv6 only instead of dual-stack */
	bool nonblock;  /* the listening socket is non-blocking */
	bool bind_only; /* bind, do not listen: reserve the port for
			   workers that listen on it with reuseport */
	/* TCP keepalive (SO_KEEPALIVE, TCP_KEEPIDLE/INTVL/CNT) when
	 * keepalive_idle_s > 0, and TCP_USER_TIMEOUT when user_timeout_ms
	 * > 0. Set on the listener, Linux copies them into every accepted
	 * socket: no call per connection. */
	int keepalive_idle_s, keepalive_interval_s, keepalive_count;
	unsigned user_timeout_ms;
	pbx_trace_cb trace; /* may be NULL */
	void *trace_arg;
};

/*
 * socket, SO_REUSEADDR, bind, listen. An IPv6 wildcard listener accepts
 * IPv4 too unless v6only. Returns the listening (or, with bind_only, the
 * bound) fd, or -errno.
 */
int pbx_listen(const struct pbx_addr *addr, const struct pbx_listen_opts *o);

struct pbx_dial_opts {
	const struct pbx_addr *source; /* bind here first; NULL: kernel picks */
	int timeout_ms;                /* per address; <= 0: no timeout */
	pbx_trace_cb trace;            /* may be NULL */
	void *trace_arg;
	/* Filled on return when not NULL: the address that answered or the
	 * last one tried, and on failure which step failed (PBX_DIAL_*). */
	struct pbx_addr *tried;
	int *failed_step;
};

enum {
	PBX_DIAL_SOCKET = 1, /* socket() */
	PBX_DIAL_BIND,       /* bind() to the source */
	PBX_DIAL_CONNECT,    /* connect() or waiting for it */
};

/*
 * Connect to the first of addrs[0..n) that answers, in order. With a
 * source, only addresses of the source's family are tried (an IPv4 source
 * and an IPv6 target cannot meet). Blocks: one dialer (struct pbx_dialer,
 * after the event loop) on a private loop, so the timeout is exact.
 * Returns a blocking, connected fd that the caller owns, or the error of
 * the last attempt (-ETIMEDOUT when the timeout expired, -EAFNOSUPPORT
 * when no address matched the source's family).
 */
int pbx_dial(
    const struct pbx_addr *addrs, size_t n, const struct pbx_dial_opts *o);

/*
 * The outcome of a connect that was under way (a socket handed over by a
 * dialer with PBX_DIALER_EARLY, once it is writable): 0 or -errno.
 */
int pbx_dial_finish(int fd);

enum {
	PBX_ACCEPT_NONBLOCK = 1 << 0, /* the new socket is non-blocking */
};

/*
 * Accept one connection; the caller's address goes to *remote (may be
 * NULL). Returns the new fd (close-on-exec; the caller owns it) or -errno;
 * -EAGAIN on a non-blocking listener with nothing pending. EINTR is
 * retried.
 */
int pbx_accept(int listen_fd, struct pbx_addr *remote, int flags);

/*
 * How long a TCP socket has moved no data either way, from the kernel's
 * own clock (TCP_INFO): what a server can still watch once a program has
 * the socket. Returns 0 and sets *ms, or -errno.
 */
int pbx_sock_idle_ms(int fd, uint32_t *ms);

/* Close with a reset instead of a FIN (SO_LINGER 0). Returns 0 or -errno. */
int pbx_close_reset(int fd);

/* Switch O_NONBLOCK on or off. Returns 0 or -errno. */
int pbx_set_nonblock(int fd, bool on);

/* ------------------------------------------------------------------ */
/* I/O                                                                  */
/* ------------------------------------------------------------------ */

/* One read(2): > 0 bytes, 0 at end of stream, or -errno. EINTR retried. */
ssize_t pbx_read_some(int fd, void *buf, size_t len);

/* One write(2), never raising SIGPIPE on a socket. EINTR retried. */
ssize_t pbx_write_some(int fd, const void *buf, size_t len);

/*
 * Write all len bytes, waiting (poll) when the fd is non-blocking and
 * full. Returns len or -errno; on error some bytes may have been written.
 */
ssize_t pbx_write_all(int fd, const void *buf, size_t len);

/*
 * Read until len bytes, end of stream or timeout (timeout_ms < 0: none).
 * Returns the count read (less than len only at end of stream), or -errno
 * (-ETIMEDOUT).
 */
ssize_t pbx_read_all(int fd, void *buf, size_t len, int timeout_ms);

/* shutdown(SHUT_WR): send FIN, keep reading. Returns 0 or -errno. */
int pbx_shutdown_write(int fd);

/* ------------------------------------------------------------------ */
/* Event loop                                                          */
/* ------------------------------------------------------------------ */

/*
 * One epoll loop. Watchers are caller-owned structs (embed them in your
 * own records); the loop keeps a pointer to each started watcher until it
 * is stopped. Callbacks may start and stop any watcher, including their
 * own, and may free a watcher's memory once it is stopped.
 */
struct pbx_loop;

enum {
	PBX_READABLE = 1 << 0,
	PBX_WRITABLE = 1 << 1,
	PBX_HANGUP = 1 << 2,      /* error or hang-up: reading tells which */
	PBX_PEER_CLOSED = 1 << 3, /* ask for it: the peer sent FIN (RDHUP) */
};

struct pbx_io;
typedef void (*pbx_io_cb)(
    struct pbx_loop *loop, struct pbx_io *w, unsigned events);
struct pbx_io {
	int fd;          /* borrowed: the loop never closes it */
	unsigned events; /* read-only: what is being watched */
	pbx_io_cb cb;
	void *data; /* the caller's */
};

struct pbx_timer;
typedef void (*pbx_timer_cb)(struct pbx_loop *loop, struct pbx_timer *t);
struct pbx_timer {
	uint64_t due_ms; /* read-only: monotonic deadline */
	uint32_t slot;   /* private: heap position + 1, 0 when stopped */
	uint32_t pass;   /* private: the timer pass it was started in */
	pbx_timer_cb cb;
	void *data;
};

struct pbx_signal;
typedef void (*pbx_signal_cb)(struct pbx_loop *loop, struct pbx_signal *s);
struct pbx_signal {
	int signo;
	pbx_signal_cb cb;
	void *data;
	struct pbx_signal *next; /* private */
	unsigned round;          /* private: last delivery it was called for */
};

struct pbx_child;
typedef void (*pbx_child_cb)(
    struct pbx_loop *loop, struct pbx_child *c, int wstatus);
struct pbx_child {
	pid_t pid;
	pbx_child_cb cb; /* gets the wait status; the child is reaped */
	void *data;
	struct pbx_io io; /* private: watches the pidfd */
};

/* Create a loop. Returns 0 and *out, or -errno. */
int pbx_loop_new(struct pbx_loop **out);

/*
 * Free a loop and close its own fds (epoll, signalfd); watchers are left
 * alone. In a forked child this only drops the child's copies.
 */
void pbx_loop_free(struct pbx_loop *loop);

/*
 * Run until pbx_loop_stop() is called or nothing is being watched (no
 * started fd, signal or child watcher, no timer and no fed event). Each
 * pass delivers the fed events (pbx_io_feed), then waits (epoll), then
 * runs the watchers and timers that are due. Returns 0 or -errno if
 * epoll_wait fails.
 */
int pbx_loop_run(struct pbx_loop *loop);

/*
 * Make pbx_loop_run return after the current callback. Called while the
 * loop is not running, it makes the next pbx_loop_run return at once
 * (a setup error found before the run is not lost).
 */
void pbx_loop_stop(struct pbx_loop *loop);

/* Monotonic milliseconds, as of the last wake-up. */
uint64_t pbx_loop_now(const struct pbx_loop *loop);

/*
 * Watch w->fd for events (PBX_READABLE | PBX_WRITABLE); calling again
 * changes the set. events == 0 stops. Returns 0 or -errno.
 */
int pbx_io_start(struct pbx_loop *loop, struct pbx_io *w, unsigned events);
void pbx_io_stop(struct pbx_loop *loop, struct pbx_io *w);

/*
 * Stop watching w without telling epoll, for a caller about to close
 * w->fd: closing the last descriptor of a socket removes it from epoll,
 * so this saves a syscall per connection. Only when no other descriptor
 * (dup, fork, a spawned program) refers to the same socket.
 */
void pbx_io_forget(struct pbx_loop *loop, struct pbx_io *w);

/*
 * The loop's before-wait hook: call w->cb with events before the loop
 * next waits, as if epoll had reported them, whether or not w is started.
 * For readiness the fd no longer signals: bytes a transport holds above
 * the fd (TLS), a file that is always ready, a completion that must not
 * run inside the call that caused it. Each call queues one delivery
 * (callers that want one at most keep their own flag); stopping or
 * forgetting w drops what is queued for it. Returns 0 or -ENOMEM.
 */
int pbx_io_feed(struct pbx_loop *loop, struct pbx_io *w, unsigned events);

/*
 * Call t->cb once, ms milliseconds from now (restarts a running timer).
 * Returns 0 or -ENOMEM.
 */
int pbx_timer_start(struct pbx_loop *loop, struct pbx_timer *t, uint64_t ms);
void pbx_timer_stop(struct pbx_loop *loop, struct pbx_timer *t);

/*
 * Deliver signal s->signo through the loop (signalfd). The signal is
 * blocked in the calling thread for as long as any signal watcher runs;
 * a forked child must unblock it (pbx_spawn and pbx_exec do). Like fd
 * and child watchers, a signal watcher keeps pbx_loop_run running.
 */
int pbx_signal_start(struct pbx_loop *loop, struct pbx_signal *s);
void pbx_signal_stop(struct pbx_loop *loop, struct pbx_signal *s);

/*
 * Call c->cb with the wait status when process c->pid exits (pidfd), and
 * reap it. Returns 0 or -errno. Stopping leaves the child unreaped.
 */
int pbx_child_start(struct pbx_loop *loop, struct pbx_child *c);
void pbx_child_stop(struct pbx_loop *loop, struct pbx_child *c);

/* ------------------------------------------------------------------ */
/* Dialer: pbx_dial driven by the loop                                 */
/* ------------------------------------------------------------------ */

/*
 * What pbx_dial does (the same order of addresses, source rule, per-address
 * timeout, trace lines and PBX_DIAL_* steps), without blocking: the outcome
 * is a completion, d->cb, called from the loop and never from inside
 * pbx_dialer_start, so a dialer may be started from any callback. Unless
 * it asks for PBX_DIALER_EARLY, the caller sees no fd readiness: a back end
 * that completes connects itself (io_uring) fits under the same calls.
 */
struct pbx_dialer;

/*
 * fd >= 0: a connected socket (non-blocking, close-on-exec) that the
 * caller now owns. fd < 0: the error of the last attempt, -ETIMEDOUT when
 * its timeout expired, -EAFNOSUPPORT when no address had the source's
 * family. The dialer is idle when cb runs: cb may start it again, start
 * others, or free it.
 */
typedef void (*pbx_dialer_cb)(struct pbx_dialer *d, int fd);

enum {
	/* Hand the socket over as soon as its connect is under way, for a
	 * caller whose first read tells the outcome (a refusal is an error
	 * there) or who waits for writability and asks pbx_dial_finish.
	 * Later addresses are tried only when connect() fails at once,
	 * timeout_ms is the caller's business, and the trace says
	 * "connect(fd, ADDR) in progress". */
	PBX_DIALER_EARLY = 1 << 0,
};

/* Caller-owned (embed it in your record); zero it before the first use. */
struct pbx_dialer {
	/* Set by the caller: */
	const struct pbx_addr *addrs; /* borrowed until cb; tried in order */
	size_t naddrs;
	const struct pbx_addr *source; /* borrowed until cb; NULL: any */
	int timeout_ms;                /* per address; <= 0: no timeout */
	int flags;                     /* PBX_DIALER_* */
	pbx_trace_cb trace;            /* may be NULL */
	void *trace_arg;
	pbx_dialer_cb cb;
	void *data; /* the caller's */
	/* Read-only, for cb: the address that answered or was tried last
	 * (in addrs; NULL when none suited the source) and, on failure,
	 * which step failed (PBX_DIAL_*; 0 when none suited). */
	const struct pbx_addr *tried;
	int failed_step;
	/* Private: */
	struct pbx_loop *loop;  /* NULL while idle */
	struct pbx_io io;       /* io.fd: the socket in hand, or -1 */
	struct pbx_timer timer; /* the per-address timeout */
	size_t next;            /* the next address to try */
	int result;             /* what a fed completion delivers */
};

/*
 * Start dialing on loop. d must be idle (zeroed, or after its cb or
 * pbx_dialer_cancel) and stay valid until cb. Returns 0: cb will be called
 * once, from the loop, unless pbx_dialer_cancel comes first; or -errno
 * (-ENOMEM: the loop could not queue the completion), with nothing held
 * and no callback to come.
 */
int pbx_dialer_start(struct pbx_loop *loop, struct pbx_dialer *d);

/*
 * Stop d before its callback: the socket in hand is closed and cb is not
 * called; d is idle and may be freed. An idle dialer is left alone.
 */
void pbx_dialer_cancel(struct pbx_dialer *d);

/* ------------------------------------------------------------------ */
/* Streams: a connection on the loop, with completion-style I/O        */
/* ------------------------------------------------------------------ */

/*
 * A stream is a connected socket (or any fd: a pipe, a terminal, a file)
 * driven by the loop. Reads hand bytes to a callback, writes complete
 * with a callback, shutdown and close complete too; the caller never sees
 * fd readiness, so a back end that completes I/O itself (io_uring) fits
 * under the same calls. Under the stream, a transport moves the bytes:
 * plain (the fd's bytes are the stream's) now, TLS later, and nothing
 * above the transport table changes.
 *
 * Callbacks run from the loop, never inside the call that caused them,
 * and may call any stream function, including pbx_stream_close.
 */
struct pbx_stream;
struct pbx_write;

/*
 * How bytes cross one stream. Each call does at most one step and never
 * blocks. read and write return a count (read: 0 at end of stream), or
 * -EAGAIN with *wait set to the fd events that will let them go on (TLS
 * may need PBX_WRITABLE to read), or -errno. shutdown ends the write side
 * (0, -EAGAIN with *wait, or -errno); close releases the transport's
 * state and the fd. has_buffered (NULL: never) says whether bytes are
 * held above the fd, which the fd will not signal.
 */
struct pbx_transport {
	const char *name;
	ssize_t (*read)(
	    struct pbx_stream *s, void *buf, size_t len, unsigned *wait);
	ssize_t (*write)(
	    struct pbx_stream *s, const void *buf, size_t len, unsigned *wait);
	int (*shutdown)(struct pbx_stream *s, unsigned *wait);
	void (*close)(struct pbx_stream *s);
	bool (*has_buffered)(const struct pbx_stream *s);
	/* The fd carries the stream's bytes as they are: splice(2), or a
	 * program given the fd, may bypass the transport. */
	bool plain;
};

/* Plain bytes on the fd: a socket (send with MSG_NOSIGNAL), or any fd. */
extern const struct pbx_transport pbx_transport_plain;

/* A buffer for the next read (*buf, *len), from the caller's memory. */
typedef void (*pbx_alloc_cb)(struct pbx_stream *s, char **buf, size_t *len);
/* n > 0 bytes in buf; 0: end of stream; < 0: -errno. Reading stops on
 * 0 and on errors. */
typedef void (*pbx_read_cb)(struct pbx_stream *s, ssize_t n, char *buf);
/* A queued write is done: status 0, -errno, or -ECANCELED (closed). */
typedef void (*pbx_write_cb)(
    struct pbx_stream *s, struct pbx_write *w, int status);
/* Shutdown done (status 0 or -errno), or the stream closed. */
typedef void (*pbx_stream_cb)(struct pbx_stream *s, int status);

/*
 * A stream's callbacks, usually shared by every stream of one kind (one
 * table per server), so an idle stream pays one pointer for them.
 */
struct pbx_stream_ops {
	pbx_alloc_cb alloc;
	pbx_read_cb read;
	pbx_stream_cb shutdown; /* may be NULL */
	pbx_stream_cb close;    /* may be NULL; after it, s may be freed */
	/* private: libpbx's own movers (the relay's splice); leave NULL */
	void (*ready)(struct pbx_stream *s, unsigned events);
};

/* A write request: caller-owned, borrowed with its bytes until cb. */
struct pbx_write {
	const char *buf;
	size_t len;
	pbx_write_cb cb;
	void *data;             /* the caller's */
	size_t off;             /* private: bytes already written */
	struct pbx_write *next; /* private: the queue */
	bool owned;             /* private: pbx_stream_write_copy's */
};

/*
 * Caller-owned (embed it in your record). Every field is private except
 * data, the counters and, read-only, io.fd.
 */
struct pbx_stream {
	struct pbx_io io; /* io.fd: borrowed until close; io.data: the stream */
	struct pbx_loop *loop;
	const struct pbx_transport *tr;
	void *tr_data; /* the transport's own state */
	const struct pbx_stream_ops *ops;
	void *data;           /* the caller's */
	struct pbx_write *wq; /* the last queued write; its next is the first */
	uint32_t queued;      /* bytes queued and not yet written */
	uint16_t flags;
	uint8_t rwait, wwait;         /* fd events the transport waits for */
	uint64_t bytes_in, bytes_out; /* read and written so far */
};

/*
 * Make fd a stream on loop (no system call). The stream takes the fd
 * over: pbx_stream_close closes it. tr NULL means pbx_transport_plain;
 * a transport with state of its own sets s->tr_data after this call. The
 * fd should be non-blocking: a blocking one makes the loop wait on it
 * (pbx_relay accepts that for a terminal, as netcat does).
 */
void pbx_stream_init(struct pbx_stream *s, struct pbx_loop *loop, int fd,
    const struct pbx_transport *tr, const struct pbx_stream_ops *ops);

/*
 * Start reading: each time bytes arrive, ops->alloc gives a buffer and
 * ops->read gets them. An fd that epoll cannot watch (a regular file) is
 * read as always ready. Returns 0 or -errno.
 */
int pbx_stream_read_start(struct pbx_stream *s);
void pbx_stream_read_stop(struct pbx_stream *s);
bool pbx_stream_is_reading(const struct pbx_stream *s);

/*
 * One read now, for callers that expect nothing or want to look before
 * they wait: > 0 bytes, 0 at end of stream, -EAGAIN when nothing is there
 * (a back end that cannot read at once always says -EAGAIN), or -errno.
 */
ssize_t pbx_stream_try_read(struct pbx_stream *s, void *buf, size_t len);

/*
 * One write now, if nothing is queued: the count written (maybe short),
 * -EAGAIN (nothing could go, or writes are queued), or -errno. A socket
 * never raises SIGPIPE; a pipe whose reader has gone does, unless the
 * caller ignores SIGPIPE (pbx does), as write(2) would.
 */
ssize_t pbx_stream_try_write(struct pbx_stream *s, const void *buf, size_t len);

/*
 * Queue w (buf and len set by the caller, borrowed until w->cb) after
 * what is queued; w->cb runs once all of it is written or has failed.
 * Returns 0, or -EPIPE when the stream is closing, shut down, or a write
 * failed before.
 */
int pbx_stream_write(struct pbx_stream *s, struct pbx_write *w);

/*
 * The same with a copy of the bytes, kept by the stream until written
 * (cb may be NULL). For the few bytes a socket did not take. Returns 0,
 * -ENOMEM, or as pbx_stream_write.
 */
int pbx_stream_write_copy(
    struct pbx_stream *s, const void *buf, size_t len, pbx_write_cb cb);

/* Bytes queued and not yet written: a writer's backpressure gauge. */
size_t pbx_stream_queued(const struct pbx_stream *s);

/*
 * End the write side (FIN, later TLS close_notify) once the queue is
 * written, then call ops->shutdown. Reading goes on. Returns 0 or -errno.
 */
int pbx_stream_shutdown(struct pbx_stream *s);

/*
 * Close: stop reading, cancel queued writes (their callbacks get
 * -ECANCELED), let the transport close the fd; then, from the loop,
 * ops->close. Until then the stream's memory must stay valid.
 */
void pbx_stream_close(struct pbx_stream *s);

/*
 * Give the fd up (a program takes the socket over): stop watching it and
 * return it; the stream is then closed, without a callback. Only for a
 * plain stream with nothing queued; else -EBUSY.
 */
int pbx_stream_release_fd(struct pbx_stream *s);

/* ------------------------------------------------------------------ */
/* Relay: bytes both ways between two sides, on the loop               */
/* ------------------------------------------------------------------ */

/*
 * A relay joins side A and side B, each a stream (in == out, a socket)
 * or a pair of streams (a local pair: stdin and stdout, two pipes):
 * - what A's input reads is written to B's output, and B's to A's;
 * - the end of one side's input is carried over: the other side's output
 *   is shut down (FIN) once every byte before it is written;
 * - every byte read is written before the relay ends; reading from one
 *   side pauses while bytes are queued toward the other (backpressure:
 *   at most one buffer in flight per direction);
 * - it ends when both directions have ended, or, with PBX_RELAY_END_WITH_B,
 *   as soon as B's input has ended and what was read is written, or at
 *   the first error (r->err, r->where);
 * - a direction from a pipe or a non-blocking socket into a pipe moves
 *   its bytes with splice(2) through a pipe of its own (two more fds),
 *   with no copy through user memory; any other direction, or every one
 *   with PBX_RELAY_COPY, copies through a buffer (16 KiB writes into a
 *   socket, 64 KiB otherwise), which on loopback beats splice(2) into a
 *   socket. The streams' byte counters count either way.
 * While it runs the relay owns the streams' callbacks (ops and data); it
 * gives them back before it calls cb, and leaves the streams open: the
 * caller closes them. After an error a write of the relay's may still be
 * queued on a stream: the relay's memory must stay valid until the
 * streams' close callbacks have run. The streams' fds must be
 * non-blocking (a blocking local output would stall the loop).
 */
enum {
	/* End when B's input ends, even if A's is still open (netcat). */
	PBX_RELAY_END_WITH_B = 1 << 0,
	/* pbx_relay: after the socket's end, go on reading in_fd to its end. */
	PBX_RELAY_WAIT_LOCAL = 1 << 1,
	/* Copy through a buffer, never splice(2). */
	PBX_RELAY_COPY = 1 << 2,
	/* splice(2) into sockets too (a real NIC may gain; loopback loses). */
	PBX_RELAY_SPLICE = 1 << 3,
};

struct pbx_relay;
typedef void (*pbx_relay_cb)(struct pbx_relay *r);

struct pbx_relay_dir { /* private: one direction */
	struct pbx_stream *from, *to;
	char
	    *buf; /* copying: owned while the relay runs or a write is queued */
	struct pbx_write w;
	bool writing, ended, shut, shut_done;
	bool splicing; /* splice(2) through pipe[] instead of buf */
	uint8_t wait;  /* splicing: PBX_READABLE (from) or PBX_WRITABLE (to) */
	uint32_t in_pipe; /* splicing: bytes in the pipe */
	int pipe[2];
	uint32_t chunk; /* copying: bytes per read */
	uint64_t bytes; /* written */
};

struct pbx_relay {
	/* Set by the caller. */
	struct pbx_stream *a_in, *a_out, *b_in, *b_out; /* borrowed */
	int flags;                                      /* PBX_RELAY_* */
	pbx_relay_cb cb;
	void *data; /* the caller's */
	/* Read-only, final when cb runs. */
	uint64_t a_to_b, b_to_a; /* bytes written each way */
	int err;                 /* 0, or the first error (-errno) */
	int where;               /* which side failed: 0 A, 1 B */
	/* Private. */
	struct pbx_relay_dir dir[2]; /* A to B, B to A */
	const struct pbx_stream_ops *saved_ops[4];
	void *saved_data[4];
	bool running, starting;
};

/*
 * Start relaying on the streams' loop. Returns 0 (cb will run once, from
 * the loop), or -errno (-ENOMEM, a stream that cannot be read) and no cb.
 */
int pbx_relay_start(struct pbx_relay *r);

/*
 * Relay between a local pair (in_fd to read, out_fd to write: a
 * terminal, pipes or files) and a connected socket, both ways, until
 * done, blocking the caller: the relay above on a private loop, with
 * PBX_RELAY_END_WITH_B unless flags has PBX_RELAY_WAIT_LOCAL. Every fd
 * is left open (the caller closes them); the socket is left
 * non-blocking. A local output that is a pipe raises SIGPIPE when its
 * reader goes: ignore SIGPIPE to get EPIPE instead. Returns 0, or the
 * first error (-errno) with *where (may be NULL) saying which side
 * failed (0 = local, 1 = socket).
 */
struct pbx_relay_stats {
	uint64_t to_socket;   /* bytes from in_fd to the socket */
	uint64_t from_socket; /* bytes from the socket to out_fd */
};
int pbx_relay(int in_fd, int out_fd, int sock_fd, int flags,
    struct pbx_relay_stats *stats, int *where);

/* ------------------------------------------------------------------ */
/* Spawn: run a program on a connection (UCSPI)                        */
/* ------------------------------------------------------------------ */

/*
 * The UCSPI environment: the caller's environment without stale PROTO and
 * TCP* variables, plus PROTO=TCP, TCPLOCALIP, TCPLOCALPORT, TCPREMOTEIP,
 * TCPREMOTEPORT. Built once; each connection only rewrites its slots, so
 * no allocation happens per connection.
 */
struct pbx_env {
	char **envp;  /* owned array (NULL-terminated); the entries taken
			 from base stay borrowed: a later setenv may free them */
	char *slots;  /* owned: storage for the five variables */
	size_t count; /* entries in envp before the terminating NULL */
	size_t nbase; /* of them, taken from base (before PROTO) */
	char **base;  /* owned array of those nbase borrowed entries */
};

/* The most variables pbx_env_set_vars adds to one program's start. */
#define PBX_ENV_VARS_MAX 80

/* Build from base (e.g. environ). Returns 0 or -ENOMEM. */
int pbx_env_init(struct pbx_env *env, char *const *base);
/* Set the five UCSPI variables for one connection. */
void pbx_env_set_tcp(struct pbx_env *env, const struct pbx_addr *local,
    const struct pbx_addr *remote);
/*
 * Add n variables ("NAME=value", borrowed until the next call or fini)
 * for the next start, replacing any of the same name taken from base;
 * PROTO and the TCP* variables are the connection's and are never
 * replaced (such entries are dropped). n = 0 restores the plain
 * environment. At most PBX_ENV_VARS_MAX; returns 0 or -E2BIG.
 */
int pbx_env_set_vars(struct pbx_env *env, const char *const *vars, size_t n);
void pbx_env_fini(struct pbx_env *env);

enum pbx_fd_layout {
	PBX_FDS_SERVER, /* the socket on fd 0 (read) and fd 1 (write) */
	PBX_FDS_CLIENT, /* the socket on fd 6 (read) and fd 7 (write) */
};

struct pbx_spawn_opts {
	const char *const *argv; /* argv[0] is searched in PATH ... */
	const char *path;        /* ... unless this is set (pbx_find_program) */
	char *const *envp;       /* NULL: the caller's environ */
	int sock_fd;             /* the connection */
	enum pbx_fd_layout layout;
	/* Signals to set back to their default action: NULL for all of them
	 * (a syscall each in the child). exec resets caught signals itself,
	 * so a caller that knows which it ignores passes just those
	 * (pbx_signals_ignored) and starts programs faster. glibc's
	 * internal signals 32 and 33, which no sigset_t call can name, are
	 * reset whatever the set. */
	const sigset_t *sigdefault;
	int flags; /* PBX_SPAWN_* */
};

enum {
	/* The caller vouches that every fd but sock_fd and 0-2 is
	 * close-on-exec (see pbx_cloexec_from): no closing sweep needed. */
	PBX_SPAWN_FDS_CLOEXEC = 1 << 0,
	/* sock_fd is already in blocking mode: no fcntl needed. */
	PBX_SPAWN_SOCK_BLOCKING = 1 << 1,
};

/*
 * Mark every fd from lowfd up close-on-exec (close_range), so that fds a
 * program was started with cannot leak into the programs it spawns.
 * Returns 0 or -errno.
 */
int pbx_cloexec_from(int lowfd);

/* The signals the calling process ignores (SIG_IGN). Returns 0 or -errno. */
int pbx_signals_ignored(sigset_t *out);

/*
 * Start argv with the socket placed per layout (in blocking mode: the
 * file description is shared, so the caller's copy turns blocking too),
 * stderr (and for
 * PBX_FDS_CLIENT stdin/stdout) inherited, every other fd closed, default
 * signal dispositions (for every signal: glibc's 32 and 33 too, which
 * posix_spawn alone would leave ignored) and an empty signal mask. Uses
 * posix_spawn (vfork semantics: the server's image is never copied).
 * Returns the pid, or -errno (-ENOENT when the program does not exist).
 */
pid_t pbx_spawn(const struct pbx_spawn_opts *o);

/*
 * Find a program as execvp would (a name with a '/' is taken as is; else
 * each directory of PATH), so a server can search once, not per caller.
 * Returns 0 with the path in out, -ENOENT, -EACCES or -ENAMETOOLONG.
 */
int pbx_find_program(const char *name, char *out, size_t size);

/*
 * The same, replacing the calling process (for a child that exists only to
 * become the program). Returns only on failure, with -errno.
 */
int pbx_exec(const struct pbx_spawn_opts *o);

#endif /* PBX_H */
