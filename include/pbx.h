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
 * A bare IPv6 address must be bracketed. Returns 0 or -EINVAL, with err
 * (may be NULL) saying which part is wrong. Resolves nothing.
 */
int pbx_hostport_parse(const char *text, int flags, struct pbx_hostport *out,
    struct pbx_parse_error *err);

/*
 * Parse a numeric IP address (no port), strictly: IPv4 must be four
 * decimal octets, IPv6 any RFC 4291 form, optionally with %scope. Returns
 * 0 or -EINVAL. The port of *out is set to port.
 */
int pbx_addr_parse_ip(const char *ip, uint16_t port, struct pbx_addr *out);

enum {
	PBX_RESOLVE_PASSIVE = 1 << 0, /* "" means every local address */
	PBX_RESOLVE_NUMERIC = 1 << 1, /* never ask the resolver */
};

/*
 * Turn a host and port into up to max addresses, in the resolver's order.
 * A numeric host never reaches the resolver. With PBX_RESOLVE_PASSIVE, the
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
	int backlog;        /* <= 0: SOMAXCONN */
	bool reuseport;     /* SO_REUSEPORT, for several listeners on a port */
	bool v6only;        /* on "::": IPv6 only instead of dual-stack */
	bool nonblock;      /* the listening socket is non-blocking */
	bool bind_only;     /* bind, do not listen: reserve the port for
			       workers that listen on it with reuseport */
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
 * and an IPv6 target cannot meet). Built on a non-blocking connect and
 * poll, so the timeout is exact. Returns a blocking, connected fd that the
 * caller owns, or the

 * error of the last attempt (-ETIMEDOUT when the timeout expired,
 * -EAFNOSUPPORT when no address matched the source's family).
 */
int pbx_dial(
    const struct pbx_addr *addrs, size_t n, const struct pbx_dial_opts *o);

/*
 * Start a non-blocking connect (for callers that wait on their own loop).
 * Returns the fd; *in_progress says whether the connect is still under way,
 * in which case writability means done and pbx_dial_finish() tells how.
 */
int pbx_dial_start(const struct pbx_addr *addr, const struct pbx_addr *source,
    bool *in_progress);
/* The outcome of a connect begun by pbx_dial_start: 0 or -errno. */
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

/*
 * Relay between a local pair (in_fd to read, out_fd to write; a terminal,
 * pipes or files) and a connected socket, in both directions, until done:
 * - end of in_fd: the socket is half-closed (FIN) and reading goes on;
 * - end of the socket: what was read is written out, then the relay ends,
 *   even if in_fd is still open (unless PBX_RELAY_WAIT_LOCAL is set);
 * - out_fd gone (EPIPE): the relay ends.
 * Every byte read is written before the relay ends. Blocks the caller.
 * The socket is left non-blocking and open (the caller closes it). A
 * pipe on out_fd raises SIGPIPE when its reader goes: ignore SIGPIPE to
 * get EPIPE instead.
 * Returns 0, or the first error (-errno) with *where set to which side
 * failed (0 = local, 1 = socket) when where is not NULL.
 */
struct pbx_relay_stats {
	uint64_t to_socket;   /* bytes from in_fd to the socket */
	uint64_t from_socket; /* bytes from the socket to out_fd */
};
enum {
	/* After the socket's end, go on reading in_fd to its end. */
	PBX_RELAY_WAIT_LOCAL = 1 << 0,

};
int pbx_relay(int in_fd, int out_fd, int sock_fd, int flags,
    struct pbx_relay_stats *stats, int *where);

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
	size_t slot;     /* private: heap position + 1, 0 when stopped */
	unsigned pass;   /* private: the timer pass it was started in */
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
 * started fd, signal or child watcher and no timer). Returns 0 or -errno if
 * epoll_wait fails.
 */
int pbx_loop_run(struct pbx_loop *loop);

/* Make pbx_loop_run return after the current callback. */
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
};

/* Build from base (e.g. environ). Returns 0 or -ENOMEM. */
int pbx_env_init(struct pbx_env *env, char *const *base);
/* Set the five UCSPI variables for one connection. */
void pbx_env_set_tcp(struct pbx_env *env, const struct pbx_addr *local,
    const struct pbx_addr *remote);
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
	 * (pbx_signals_ignored) and starts programs faster. */
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
 * signal dispositions and an empty signal mask. Uses posix_spawn (vfork
 * semantics: the server's image is never copied). Returns the pid, or
 * -errno (-ENOENT when the program does not exist).
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
