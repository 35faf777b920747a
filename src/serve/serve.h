/* SPDX-License-Identifier: MIT */
/*
 * serve.h: the server. A model (serial, fork, ...) decides how accepted
 * connections are dispatched; a handler (hello, echo, discard, exec) is
 * what happens on one connection. The two meet only through the
 * connection record and the calls below, so any handler runs under any
 * model and each is written once.
 */
#ifndef SERVE_H
#define SERVE_H

#include "pbx.h"

#include <stdbool.h>
#include <stdint.h>

enum serve_model {
	SERVE_SERIAL, /* one connection at a time (the paper's FIFO model) */
	SERVE_FORK,   /* a child process per connection (the paper's fork) */
	SERVE_EVENT,  /* every connection in one process, one epoll loop */
};

struct serve_conn;
struct serve;

/* What a model does with each accepted fd (takes it over). */
typedef void (*serve_take_fn)(
    struct serve *srv, int fd, const struct pbx_addr *remote);

/*
 * A handler is a non-blocking state machine on a connection. start runs
 * when the connection reaches its content phase; ready when the fd is
 * ready for what the handler asked with conn_want(); release (may be NULL)
 * when the connection ends for any reason. A handler ends the connection
 * with conn_end() and never touches the fd except through conn_* calls
 * (exec alone asks for the raw fd, and only of a plain connection).
 */
struct serve_handler {
	const char *name;
	void (*start)(struct serve_conn *c);
	void (*ready)(struct serve_conn *c, unsigned events);
	void (*release)(struct serve_conn *c);
};

extern const struct serve_handler serve_hello;
extern const struct serve_handler serve_echo;
extern const struct serve_handler serve_discard;
extern const struct serve_handler serve_exec;

/*
 * The exec handler under the fork model, where a child exists only to
 * become the program: the parent prepares the caller's environment before
 * fork (prepare), and the child execs at once (become, never returns), so
 * it touches as few pages as it can before exec replaces it.
 */
void serve_exec_prepare(
    struct serve *srv, int fd, const struct pbx_addr *remote);
void serve_exec_become(struct serve *srv, int fd);

struct serve_opts {
	const char *address; /* the ADDRESS argument, as typed */
	struct pbx_hostport where;
	enum serve_model model;
	unsigned max_conns;
	int backlog;
	const struct serve_handler *handler;
	const char *const *argv; /* exec: the program and its arguments */
	unsigned workers;        /* 0: one process; N: a supervisor and N */
};

/* A child of the fork model, from fork to reaping. */
struct serve_child {
	pid_t pid;
	struct pbx_addr remote;
	uint64_t started_ms;
};

/* The running server: one per process. */
struct serve {
	const struct serve_opts *opts; /* borrowed */
	struct pbx_loop *loop;         /* owned */
	int listen_fd;                 /* owned, -1 in a fork child */
	int ready_fd; /* owned: a worker says "listening" here, else -1 */
	struct pbx_io listen_io;
	serve_take_fn take;            /* the model's dispatch */
	struct pbx_timer accept_retry; /* resumes accepting after a pause */
	struct pbx_addr local;
	unsigned live;     /* connections (or children) in progress */
	uint64_t accepted; /* connections accepted since start */
	bool starved;      /* out of fds (or memory) until accept says EAGAIN */

	unsigned limit; /* stop accepting at this many */
	bool in_child;  /* a fork-model child: exec may replace us */
	struct pbx_signal sig_term, sig_int, sig_chld;
	struct pbx_env env; /* exec: the UCSPI environment, built once */
	char *program;      /* owned: exec: the program's path, found once */
	sigset_t ignored;   /* exec: what a program must not inherit */

	char *scratch; /* owned: read buffer shared by handlers */
	size_t scratch_size;
	struct serve_conn *pool;      /* free connection records */
	struct serve_conn *conns;     /* connections in progress */
	struct serve_child *children; /* fork model: owned table */
	size_t nchildren, children_cap;
};

/*
 * A connection record with phases: accepted (addresses known, nothing
 * done) and then handler started. Stages such as access rules, a PROXY
 * header or a TLS handshake can slot in between later without the handler
 * knowing. Records are pooled: no allocation per connection once warm.
 */
struct serve_conn {
	struct pbx_io io;  /* fd and watcher; io.data is this record */
	struct serve *srv; /* borrowed; srv->opts->handler runs the content */
	struct pbx_addr local; /* use conn_local(): filled on demand */
	struct pbx_addr remote;
	uint64_t bytes_in, bytes_out;
	uint64_t started_ms;
	/* A connection either runs a program or holds unsent bytes, never
	 * both: sharing the space keeps an idle record at 200 bytes. */
	union {
		struct pbx_child child; /* exec: the program, once started */
		struct {
			char *pending; /* owned: bytes not yet taken */
			uint32_t pending_off, pending_len;
		};
		struct pbx_timer linger; /* draining: how long to wait */
	};
	bool program;  /* child is the member in use */
	bool draining; /* linger is: reading the caller's last bytes */
	struct serve_conn *next_free;             /* in srv->pool */
	struct serve_conn *prev_live, *next_live; /* in srv->conns */
};

/* End every connection still in progress (the server is stopping). */
void serve_conns_abort(struct serve *srv);

/* Run the server until SIGTERM/SIGINT; returns the exit status. */
int serve_run(const struct serve_opts *o);

/*
 * Listen on the first of addrs that works ("::" falls back to "0.0.0.0"
 * where IPv6 is missing); logs the error. Returns the fd or -errno.
 */
int serve_listen_first(
    const struct pbx_addr *addrs, int n, const struct pbx_listen_opts *lo);

/* Resolve the listening address (logs the error); returns the count. */

int serve_resolve(const struct serve_opts *o, struct pbx_addr *addrs, int max);

/*
 * One server process on the first address of addrs that can be bound.
 * ready_fd < 0: say "listening on" on stderr; else (a worker) listen with
 * SO_REUSEPORT and write one byte to ready_fd instead. Returns 0 or 1.
 */
int serve_process(const struct serve_opts *o, const struct pbx_addr *addrs,
    int n, int ready_fd);

/* A supervisor of o->workers processes (workers.c). */
int serve_workers_run(const struct serve_opts *o);

/* The models: accept loops that hand connections to serve_conn_begin. */
int serve_serial_run(struct serve *srv);
int serve_fork_run(struct serve *srv);
int serve_event_run(struct serve *srv);

/* Shared by the models (server.c). */
/*
 * Watch the listener; on each wake-up accept in a batch until the kernel
 * has no more callers or the limit is reached, handing each to take.
 * Runs the loop until the server stops.
 */
int serve_accept_loop(struct serve *srv, serve_take_fn take);

int serve_accept_one(struct serve *srv, struct pbx_addr *remote);
void serve_pause_accept(struct serve *srv, bool pause);
void serve_trace(void *arg, const char *line);

/*
 * Take over an accepted fd and run the handler on it (conn.c). The record
 * lives until the handler calls conn_end().
 */
void serve_conn_begin(struct serve *srv, int fd, const struct pbx_addr *remote);

/* Connection calls for handlers (conn.c). Counts bytes; traces. */
ssize_t conn_read(struct serve_conn *c, void *buf, size_t len);
ssize_t conn_write(struct serve_conn *c, const void *buf, size_t len);
int conn_shutdown_write(struct serve_conn *c);
void conn_want(struct serve_conn *c, unsigned events);
/* Queue bytes the socket did not take; the handler then waits WRITABLE. */
int conn_keep_pending(struct serve_conn *c, const char *buf, size_t len);
/* Write queued bytes; 0 when all are gone, -EAGAIN if some remain. */
int conn_flush_pending(struct serve_conn *c);
/* The address the caller reached (looked up once, when first asked). */
const struct pbx_addr *conn_local(struct serve_conn *c);
/* The raw socket, for handlers that give it to a program. */
int conn_fd(const struct serve_conn *c);
/* End the connection: log, close, release, recycle. err 0 or -errno. */
void conn_end(struct serve_conn *c, int err);
/*
 * End a connection whose handler has said all it will say but has not
 * read the caller (hello). Closing a socket with unread input sends a
 * reset that can destroy the reply in flight, so when the caller has
 * sent something, pbx half-closes and drains it first (for at most a
 * second); when not (the common case), it costs one recv and the close.
 */
void conn_finish(struct serve_conn *c);

/* Close the server's copy of the socket (the program keeps its own). */
void conn_close_fd(struct serve_conn *c);
/* Reap programs on SIGCHLD and end their connections (event, serial). */
int serve_watch_programs(struct serve *srv);
/* The program now owns the socket: close ours, watch for its exit. */

void conn_watch_program(struct serve_conn *c, pid_t pid, pbx_child_cb cb);

/* Log the end of a program's run (exec) and end the connection. */
void conn_end_program(struct serve_conn *c, int wstatus);

#endif /* SERVE_H */
