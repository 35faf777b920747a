/* SPDX-License-Identifier: MIT */
/*
 * serve.h: the server. A model (serial, fork, event) decides how accepted
 * connections are dispatched; a connection then goes through its phases
 * (conn.c: accepted, stages, content, end), and a handler (hello, echo,
 * discard, exec) is its content. Models, stages and handlers meet only
 * through the connection record and the calls below, so any handler runs
 * under any model and each is written once.
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
struct serve_rules;
struct serve_limits;

/* What a model does with each accepted fd (takes it over). */
typedef void (*serve_take_fn)(
    struct serve *srv, int fd, const struct pbx_addr *remote);

/* ---- handlers: a connection's content ---- */

/* What the core may do with a handler, instead of asking which it is. */
enum {
	/* Gives the socket itself to a program: accept it blocking when no
	 * stage will read it first (spares a fcntl per caller). */
	SERVE_HANDLER_RAW_SOCKET = 1 << 0,
	/* Under fork with no stage, the child may become the handler at
	 * once (prepare in the parent, become in the child). */
	SERVE_HANDLER_BECOMES = 1 << 1,
};

/*
 * A handler is a state machine driven by the connection's stream. start
 * runs when the connection reaches its content phase; read (NULL for a
 * handler that never reads) gets what conn_read_start asked for (n > 0 bytes in
 * buf, 0 at the caller's end, < 0 an error); sent (may be NULL) when what
 * conn_send had to queue is written; release (may be NULL) when the connection
 * is recycled. A handler ends the connection with conn_end() or conn_finish()
 * and does its I/O only through conn_* calls. Handlers never log: the core
 * emits the events.
 */
struct serve_handler {
	const char *name;
	unsigned flags; /* SERVE_HANDLER_* */
	/* Per server process, before the first caller (may be NULL). */
	int (*setup)(struct serve *srv);
	/* Per loop that runs connections (may be NULL). */
	int (*attach)(struct serve *srv);
	void (*start)(struct serve_conn *c);
	void (*read)(struct serve_conn *c, ssize_t n, char *buf);
	void (*sent)(struct serve_conn *c);
	void (*release)(struct serve_conn *c);
	/* SERVE_HANDLER_BECOMES: prepare in the fork parent before fork;
	 * become in the child replaces it with the program (srv->opts->argv)
	 * and returns only on failure. */
	void (*prepare)(
	    struct serve *srv, int fd, const struct pbx_addr *remote);
	int (*become)(struct serve *srv, int fd); /* -errno on failure */
};

extern const struct serve_handler serve_hello;
extern const struct serve_handler serve_echo;
extern const struct serve_handler serve_discard;
extern const struct serve_handler serve_exec;

/* ---- stages: what runs between accept and the content ---- */

/* A stage's verdict, as nginx's phase checkers say next / again / done. */
enum serve_verdict {
	SERVE_NEXT, /* passed: run the next stage, then the content */
	SERVE_WAIT, /* waiting on the loop: the stage calls conn_resume */
	SERVE_END,  /* the connection ends here (the stage said why) */
};

/*
 * A stage (access decision, PROXY header, TLS handshake, ...). run is
 * called once when the connection reaches it; a stage that waits keeps
 * its state in the handler's part of the record (c->u) and reports with
 * conn_resume(c, verdict). Its time is bounded by the record's deadline.
 * cancel (may be NULL) runs when the connection ends in the stage: it
 * said END, or a deadline, an error or the server's stop came while it
 * waited. It lets go of what run took (a timer, c->u); a stage that
 * passes lets go itself.
 */
struct serve_stage {
	const char *name;
	enum serve_verdict (*run)(struct serve_conn *c);
	void (*cancel)(struct serve_conn *c);
};

/*
 * Run stages[*pos..n) until one waits or ends; *pos says where to resume.
 * SERVE_NEXT when every stage has passed. (stage.c)
 */
enum serve_verdict serve_stages_run(const struct serve_stage *const *stages,
    size_t n, uint8_t *pos, struct serve_conn *c);

/* ---- the server ---- */

struct serve_opts {
	const char *address; /* the ADDRESS argument, as typed */
	struct pbx_hostport where;
	enum serve_model model;
	unsigned max_conns;
	int backlog;
	const struct serve_handler *handler;
	const char *const *argv; /* exec: the program and its arguments */
	unsigned workers;        /* 0: one process; N: a supervisor and N */
	const struct serve_stage *const *stages; /* run in order; borrowed */
	size_t nstages;
	/* Deadlines in ms, 0 for none: no byte either way for idle_ms, or a
	 * whole call longer than total_ms, ends it; a program then gets
	 * SIGTERM, and SIGKILL kill_grace_ms later. */
	uint32_t idle_ms, total_ms, kill_grace_ms;
	/* Set on the listener, inherited by every accepted socket. */
	int keepalive_idle_s, keepalive_interval_s, keepalive_count;
	unsigned user_timeout_ms;
	/* The door: access rules (borrowed, NULL: everyone may call;
	 * rules_path is read again on SIGHUP) and the most live calls per
	 * address, counted per /prefix4 and /prefix6 (0: no limit). */
	const struct serve_rules *rules;
	const char *rules_path;
	unsigned max_per_ip, prefix4, prefix6;
	const char *reject_message; /* sent to a caller over it; NULL: none */
	/* PROXY protocol: the versions taken (PROXY_V1 | PROXY_V2; 0: off)
	 * from the senders proxy_from covers (borrowed), within
	 * proxy_timeout_ms; proxy_required refuses a call from elsewhere
	 * (else it is served with its own address). */
	unsigned proxy_versions;
	const struct serve_rules *proxy_from;
	bool proxy_required;
	uint32_t proxy_timeout_ms;
};

/* A call that came through a PROXY sender. */
struct serve_proxied {
	struct pbx_addr via;  /* the sender */
	struct pbx_addr dest; /* what the client reached; len 0: the socket's */
};

/* A child of the fork model, from fork to reaping. */
struct serve_child {
	pid_t pid;
	int fd; /* owned: a program's socket, watched for idleness; or -1 */
	struct pbx_addr remote;
	/* The loop's clock: when it began and last moved a byte, and the
	 * end of its grace once told to stop (0: none left). */
	uint64_t started_ms, active_ms, grace_ms;
	int8_t expired; /* enum serve_expiry: why it was told to stop */
	bool counted;   /* the door counted it: give it back when reaped */
};

/* Why a deadline ended a call (the end event's reason). */
enum serve_expiry {
	SERVE_LIVE,    /* no deadline has passed */
	SERVE_IDLE,    /* no byte either way for idle_ms: end=idle */
	SERVE_OVERDUE, /* longer than total_ms (or a stage's): end=timeout */
};

/* The end event's error for a deadline: end=idle or end=timeout. */
int serve_expiry_err(enum serve_expiry why);

/* The earlier of two deadlines, 0 meaning none. */
static inline uint64_t
serve_earliest(uint64_t a, uint64_t b)
{
	if (a == 0)
		return b;
	if (b == 0 || a < b)
		return a;
	return b;
}

/* The running server: one per process. */
struct serve {
	const struct serve_opts *opts; /* borrowed */
	struct pbx_loop *loop;         /* owned */
	int listen_fd;                 /* owned, -1 in a fork child */
	int ready_fd; /* owned: a worker says "listening" here, else -1 */
	struct pbx_io listen_io;
	serve_take_fn take;            /* the model's dispatch */
	struct pbx_timer accept_retry; /* resumes accepting after a pause */
	struct pbx_timer child_timer;  /* fork: the children's deadlines */
	struct pbx_addr local;
	unsigned live;     /* connections (or children) in progress */
	uint64_t accepted; /* connections accepted since start */
	bool starved;      /* out of fds (or memory) until accept says EAGAIN */
	/* Out of processes: callers are held (not accepted, or not yet
	 * given their program) until a fork or spawn works again; retry
	 * starts what is held, on a timer and when a program ends. */
	bool no_procs;
	bool procs_said; /* logged: the episode ends when accept catches up */
	void (*retry)(struct serve *srv);
	struct pbx_timer proc_retry;
	int held_fd; /* fork: the caller waiting for a child, or -1 */
	struct pbx_addr held_remote;
	bool raw_accept; /* accept blocking: the handler takes the socket */

	unsigned limit; /* stop accepting at this many */
	bool in_child;  /* a fork-model child: it serves one connection */
	struct pbx_signal sig_term, sig_int, sig_chld;
	struct pbx_env env; /* exec: the UCSPI environment, built once */
	char *program;      /* owned: exec: the program's path, found once */
	sigset_t ignored;   /* exec: what a program must not inherit */

	char *scratch; /* owned: the read buffer every connection shares */
	size_t scratch_size;
	struct serve_conn *pool;      /* free connection records */
	struct serve_conn *conns;     /* connections in progress */
	struct serve_child *children; /* fork model: owned table */
	size_t nchildren, children_cap;

	/* The door (door.c). */
	const struct serve_rules *rules; /* in force: opts' or rules_owned */
	struct serve_rules *rules_owned; /* owned: the last reloaded */
	struct serve_limits *limits;     /* per-address counts, or NULL */
	bool limits_owned;               /* else a supervisor's, shared */
	unsigned worker;                 /* this process's number (workers) */
	struct pbx_signal sig_hup;
	char concurrency[32]; /* "TCPCONCURRENCY=N" for the next program */
	struct proxy_wait *proxy_waits; /* owned: headers on their way */
	/* During a take only: the PROXY facts of the call taken, or NULL. */
	const struct serve_proxied *proxied;
};

/* The phases of a connection, in order (conn.c runs them). */
enum conn_phase {
	CONN_ACCEPTED, /* both addresses known, nothing has run */
	CONN_STAGES,   /* a stage is running, maybe waiting on the loop */
	CONN_CONTENT,  /* the handler has the connection */
	CONN_LINGER,   /* the handler is done; the caller's last bytes drain */
	CONN_PROGRAM,  /* a program has the socket; waiting for its exit */
	CONN_CLOSING,  /* ended: the stream closes, then the record is free */
};

/*
 * A connection record. Records are pooled (no allocation per connection
 * once warm) and, in the sanitizer build, poisoned while free. An idle
 * record is 208 bytes: every field is paid per idle connection.
 */
struct serve_conn {
	struct serve_conn *next;  /* in srv->conns, or in srv->pool */
	struct serve_conn *prev;  /* in srv->conns */
	struct pbx_stream stream; /* the socket; its counters are the bytes */
	struct serve *srv;        /* borrowed */
	struct pbx_addr remote;
	/* One deadline for whatever phase runs (linger now; idle, total,
	 * header and handshake limits later). The timer may run early: it
	 * re-arms itself from due_ms, so moving the deadline later (on
	 * activity) costs no heap operation. */
	struct pbx_timer timer;
	uint32_t started_ms; /* the loop's clock, low 32 bits */
	uint32_t due_ms;     /* since started_ms; 0: no deadline */
	uint32_t active_ms;  /* since started_ms: the last read or write */
	uint8_t phase;       /* enum conn_phase */
	uint8_t stage;       /* the next stage to run */
	/* Flags in the bytes before the union: the record stays at 208. */
	bool handled : 1;     /* the handler started: its release runs */
	bool counted : 1;     /* the door counted it: give back at the end */
	unsigned expired : 2; /* enum serve_expiry */
	union {               /* the stage's or the handler's own state */
		struct {
			pid_t pid; /* exec: the program */
			int fd;    /* owned: its socket, kept to see idleness */
		} prog;
		void *ptr;
	} u;
	struct serve_proxied *proxied; /* owned: came through a proxy */
};

/* ---- the door (door.c) ---- */

enum serve_door {
	SERVE_DOOR_DENIED,  /* refused (rules or a limit): close it */
	SERVE_DOOR_IN,      /* let in, not counted (no limit) */
	SERVE_DOOR_COUNTED, /* let in and counted: serve_door_leave at end */
};

/* Rules in force, the SIGHUP watcher, the limits (shared: a
 * supervisor's table, or NULL to make one). Returns 0 or -errno. */
int serve_door_setup(struct serve *srv, struct serve_limits *shared);
void serve_door_fini(struct serve *srv);
/*
 * May the caller at remote come in (via: the PROXY sender, or NULL)?
 * Refused, it has been logged (deny or reject, with the reject message
 * sent if any); the caller closes fd. Returns enum serve_door.
 */
int serve_door_admit(struct serve *srv, int fd, const struct pbx_addr *remote,
    const struct pbx_addr *via);
/* --proxy-protocol: a trusted sender's call waits for its header, then
 * goes through the door and to the model; any other is served as it is
 * (or refused, with proxy_required). Takes fd over. (proxy.c) */
void serve_proxy_take(struct serve *srv, int fd, const struct pbx_addr *remote);
/* The server stops: headers still on their way are dropped. */
void serve_proxy_abort(struct serve *srv);

/* The address a caller on fd reached (getsockname when listening on any). */
void serve_local_of(const struct serve *srv, int fd, struct pbx_addr *local);

/* A counted call ended. */
void serve_door_leave(struct serve *srv, const struct pbx_addr *remote);
/*
 * The variables a program of this caller gets: its rule's, then
 * TCPCONCURRENCY when calls are counted. Fills vars (borrowed until the
 * next call); returns how many.
 */
size_t serve_door_vars(struct serve *srv, const struct pbx_addr *remote,
    const char **vars, size_t max);

/* End every connection still in progress (the server is stopping). */
void serve_conns_abort(struct serve *srv);
/* Free the pooled records. */
void serve_conns_free(struct serve *srv);

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
/* The same as worker number worker, counting into a shared table. */
int serve_worker_process(const struct serve_opts *o,
    const struct pbx_addr *addrs, int n, int ready_fd, unsigned worker,
    struct serve_limits *limits);

/* A supervisor of o->workers processes (workers.c). */
int serve_workers_run(const struct serve_opts *o);

/* The models: accept loops that hand connections to serve_conn_begin. */
int serve_serial_run(struct serve *srv);
int serve_fork_run(struct serve *srv);
int serve_event_run(struct serve *srv);

/*
 * Watch the listener; on each wake-up accept in a batch until the kernel
 * has no more callers or the limit is reached, handing each to take.
 * Runs the loop until the server stops. (server.c)
 */
int serve_accept_loop(struct serve *srv, serve_take_fn take);
int serve_accept_one(struct serve *srv, struct pbx_addr *remote);
/* Stop or resume watching the listener (it stays off while no_procs). */
void serve_pause_accept(struct serve *srv, bool pause);

/*
 * fork or posix_spawn failed for want of processes or memory (what:
 * "fork", "run PROGRAM"): stop accepting and have srv->retry run in a
 * moment, and when a program ends. One line per episode.
 */
void serve_out_of_procs(struct serve *srv, const char *what, int err);
/* A fork or spawn worked: the episode is over, accepting resumes. */
void serve_procs_back(struct serve *srv);
/* A program or child ended: what is held may start now. */
void serve_procs_freed(struct serve *srv);
/* Whether err means out of processes or memory (worth a retry). */
bool serve_is_out_of_procs(int err);

/* True when a fork child may become the handler without running stages. */
bool serve_fast_become(const struct serve *srv);

/* Reap programs on SIGCHLD and end their connections (conn.c). */
int serve_watch_programs(struct serve *srv);

/* ---- the connection's phases and its I/O (conn.c) ---- */

/*
 * Take over an accepted fd: the record is made, the accept event emitted,
 * the stages run, then the handler's content. The record lives until the
 * connection ends.
 */
void serve_conn_begin(struct serve *srv, int fd, const struct pbx_addr *remote);

/* A waiting stage is done: go on from the next stage (or end). */
void conn_resume(struct serve_conn *c, enum serve_verdict v);

/* Handler I/O. Reading delivers to handler->read until stopped. */
int conn_read_start(struct serve_conn *c);
void conn_read_stop(struct serve_conn *c);
/*
 * Send bytes: what the socket takes now goes at once, the rest is queued
 * (copied) and handler->sent runs once it is written. Returns 0 or -errno.
 */
int conn_send(struct serve_conn *c, const void *buf, size_t len);
/* Bytes queued by conn_send and not yet written. */
size_t conn_queued(const struct serve_conn *c);
/* The address the caller reached (getsockname when the listener is any). */
void conn_local(const struct serve_conn *c, struct pbx_addr *out);
/* End the connection: err 0 (closed) or -errno. Emits the end event. */
void conn_end(struct serve_conn *c, int err);
/*
 * End a connection whose handler has said all it will say but has not
 * read the caller (hello). Closing a socket with unread input sends a
 * reset that can destroy the reply in flight, so when the caller has
 * sent something, pbx half-closes and drains it first (for at most a
 * second); when not (the common case), it costs one recv and the close.
 */
void conn_finish(struct serve_conn *c);
/*
 * Give the socket to a program (pid): the server's copy is closed, the
 * record waits for the program's exit (SIGCHLD), then ends.
 */
void conn_give_to_program(struct serve_conn *c, pid_t pid);
/* The raw socket, for a handler that gives it to a program. */
int conn_fd(const struct serve_conn *c);
/* A program could not be started: say so (always) and end. */
void conn_program_failed(struct serve_conn *c, int err);

#endif /* SERVE_H */
