/* SPDX-License-Identifier: MIT */
/* server.c: what every model shares: listen, signals, accept, pausing. */
#include "../log/log.h"
#include "emit.h"
#include "serve.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#define SCRATCH_SIZE 65536
#define ACCEPT_RETRY_MS 100

void
serve_pause_accept(struct serve *srv, bool pause)
{
	if (srv->listen_fd < 0)
		return;
	pause = pause || srv->no_procs;
	if (pause)
		pbx_io_stop(srv->loop, &srv->listen_io);
	else if (srv->listen_io.events == 0)
		pbx_io_start(srv->loop, &srv->listen_io, PBX_READABLE);
}

static void
on_accept_retry(struct pbx_loop *loop, struct pbx_timer *t)
{
	struct serve *srv = t->data;

	(void)loop;
	serve_pause_accept(srv, srv->live >= srv->limit);
}

/*
 * Out of fds, memory or buffers: accept would fail again at once, so
 * watching the listener now would spin. Stop watching it; the next
 * connection to end, or a timer, resumes it. One line per episode.
 */
static void
back_off(struct serve *srv, int err)
{
	if (!srv->starved)
		log_error(
		    "accept: %s (pausing until a connection ends, retrying every %d ms)",
		    pbx_strerror(err), ACCEPT_RETRY_MS);
	srv->starved = true;
	serve_pause_accept(srv, true);
	srv->accept_retry.cb = on_accept_retry;
	srv->accept_retry.data = srv;
	pbx_timer_start(srv->loop, &srv->accept_retry, ACCEPT_RETRY_MS);
}

bool
serve_is_out_of_procs(int err)
{
	return err == -EAGAIN || err == -ENOMEM;
}

static void
on_proc_retry(struct pbx_loop *loop, struct pbx_timer *t)
{
	struct serve *srv = t->data;

	(void)loop;
	serve_procs_freed(srv);
}

void
serve_out_of_procs(struct serve *srv, const char *what, int err)
{
	if (!srv->procs_said)
		log_error(
		    "%s: %s (out of processes: holding callers, retrying every %d ms)",
		    what, pbx_strerror(err), ACCEPT_RETRY_MS);
	srv->no_procs = true;
	srv->procs_said = true;
	serve_pause_accept(srv, true);
	srv->proc_retry.cb = on_proc_retry;
	srv->proc_retry.data = srv;
	pbx_timer_start(srv->loop, &srv->proc_retry, ACCEPT_RETRY_MS);
}

void
serve_procs_back(struct serve *srv)
{
	if (!srv->no_procs)
		return;
	srv->no_procs = false;
	pbx_timer_stop(srv->loop, &srv->proc_retry);
	serve_pause_accept(srv, srv->live >= srv->limit);
}

void
serve_procs_freed(struct serve *srv)
{
	if (srv->no_procs && srv->retry != NULL)
		srv->retry(srv);
}

int
serve_accept_one(struct serve *srv, struct pbx_addr *remote)
{
	char text[PBX_ADDR_STRLEN];

	/* Connections run on the loop; a socket that goes to a program at
	 * once is accepted blocking, which spares a fcntl per caller. */
	int flags = srv->raw_accept ? 0 : PBX_ACCEPT_NONBLOCK;
	int fd = pbx_accept(srv->listen_fd, remote, flags);

	if (fd >= 0) {
		srv->accepted++;

		if (log_tracing()) {
			pbx_addr_format(remote, text, sizeof text);
			log_trace("accept(%d) = %d from %s", srv->listen_fd, fd,
			    text);
		}
		return fd;
	}
	switch (fd) {
	case -EMFILE:
	case -ENFILE:
	case -ENOBUFS:
	case -ENOMEM:
		back_off(srv, fd);
		break;
	case -EAGAIN:
		/* Caught up with every caller: an out-of-fds episode is
		 * over, and an out-of-processes one if nobody is held. */
		srv->starved = false;
		if (!srv->no_procs)
			srv->procs_said = false;
		break;
	default:
		/* A caller who left before we answered, or the like. */
		break;
	}
	return fd;
}

static void
on_listener(struct pbx_loop *loop, struct pbx_io *w, unsigned events)
{
	struct serve *srv = w->data;
	struct pbx_addr remote;

	(void)loop;
	(void)events;
	while (srv->live < srv->limit && !srv->no_procs) {
		int fd = serve_accept_one(srv, &remote);
		if (fd < 0)
			break;
		if (srv->opts->proxy_versions != 0) {
			serve_proxy_take(srv, fd, &remote);
			continue;
		}
		/* Turned away before a byte is read, and before any record. */
		if (serve_door_admit(srv, fd, &remote, NULL) ==
		    SERVE_DOOR_DENIED) {
			log_trace("close(%d)", fd);
			close(fd);
			continue;
		}
		srv->take(srv, fd, &remote);
	}
}

int
serve_accept_loop(struct serve *srv, serve_take_fn take)
{
	srv->take = take;
	srv->listen_io.cb = on_listener;
	serve_pause_accept(srv, srv->live >= srv->limit);
	return pbx_loop_run(srv->loop);
}

static void
on_stop_signal(struct pbx_loop *loop, struct pbx_signal *s)
{
	(void)s;
	pbx_loop_stop(loop);
}

int
serve_listen_first(
    const struct pbx_addr *addrs, int n, const struct pbx_listen_opts *lo)
{
	char text[PBX_ADDR_STRLEN];
	int fd = -EADDRNOTAVAIL;

	for (int i = 0; i < n; i++) {
		fd = pbx_listen(&addrs[i], lo);
		/* No IPv6 on this host: "::" falls back to "0.0.0.0". */
		if (fd == -EAFNOSUPPORT && i + 1 < n)
			continue;
		if (fd < 0) {
			pbx_addr_format(&addrs[i], text, sizeof text);
			log_error("listen %s: %s", text, pbx_strerror(fd));
		}
		break;
	}
	return fd;
}

static int
listen_first(struct serve *srv, const struct pbx_addr *addrs, int n)
{
	const struct serve_opts *o = srv->opts;
	struct pbx_listen_opts lo = {
	    .backlog = o->backlog,
	    .nonblock = true,
	    .reuseport = srv->ready_fd >= 0, /* one worker among several */
	    .keepalive_idle_s = o->keepalive_idle_s,
	    .keepalive_interval_s = o->keepalive_interval_s,
	    .keepalive_count = o->keepalive_count,
	    .user_timeout_ms = o->user_timeout_ms,
	    .trace = log_tracing() ? log_trace_cb : NULL,
	};

	return serve_listen_first(addrs, n, &lo);
}

int
serve_resolve(const struct serve_opts *o, struct pbx_addr *addrs, int max)
{
	int n = pbx_addr_resolve(
	    &o->where, PBX_RESOLVE_PASSIVE, addrs, (size_t)max);
	if (n < 0)
		log_error("resolve %s: %s", o->where.host, pbx_strerror(n));
	return n;
}

bool
serve_fast_become(const struct serve *srv)
{
	return (srv->opts->handler->flags & SERVE_HANDLER_BECOMES) &&
	       srv->opts->nstages == 0;
}

/* The handler's per-server setup, and its hook on this loop. */
static int
prepare_handler(struct serve *srv)
{
	const struct serve_handler *h = srv->opts->handler;
	int r = h->setup != NULL ? h->setup(srv) : 0;

	/* The fork parent runs no connection: its children attach. */
	if (r == 0 && h->attach != NULL && srv->opts->model != SERVE_FORK)
		r = h->attach(srv);
	return r;
}

/* Listen and install signal watchers: everything but serving. */
static int
serve_setup(struct serve *srv, const struct pbx_addr *addrs, int n,
    struct serve_limits *shared)
{
	int r = pbx_loop_new(&srv->loop);

	srv->sig_term =
	    (struct pbx_signal){.signo = SIGTERM, .cb = on_stop_signal};
	srv->sig_int =
	    (struct pbx_signal){.signo = SIGINT, .cb = on_stop_signal};
	if (r == 0)
		r = pbx_signal_start(srv->loop, &srv->sig_term);
	if (r == 0)
		r = pbx_signal_start(srv->loop, &srv->sig_int);
	if (r < 0) {
		log_error("watch signals: %s", pbx_strerror(r));
		return r;
	}
	srv->listen_fd = listen_first(srv, addrs, n);
	if (srv->listen_fd < 0)
		return srv->listen_fd;
	pbx_addr_local(srv->listen_fd, &srv->local);
	srv->scratch_size = SCRATCH_SIZE;
	srv->scratch = malloc(SCRATCH_SIZE);
	r = srv->scratch == NULL ? -ENOMEM : 0;
	if (r == 0)
		r = serve_door_setup(srv, shared);
	if (r == 0)
		r = prepare_handler(srv);
	if (r < 0)
		log_error("start: %s", pbx_strerror(r));
	return r;
}

static void
serve_teardown(struct serve *srv)
{
	serve_conns_free(srv); /* serve_process ended the calls */
	if (srv->held_fd >= 0)
		close(srv->held_fd);
	pbx_timer_stop(srv->loop, &srv->proc_retry);
	if (srv->listen_fd >= 0)
		close(srv->listen_fd);
	serve_door_fini(srv);
	pbx_env_fini(&srv->env);
	free(srv->program);
	free(srv->scratch);
	for (size_t i = 0; i < srv->nchildren; i++)
		if (srv->children[i].fd >= 0)
			close(srv->children[i].fd);
	free(srv->children);
	pbx_loop_free(srv->loop);
}

static int
run_model(struct serve *srv)
{
	switch (srv->opts->model) {
	case SERVE_SERIAL:
		return serve_serial_run(srv);
	case SERVE_FORK:
		return serve_fork_run(srv);
	case SERVE_EVENT:
		return serve_event_run(srv);
	}
	return -EINVAL;
}

/* Ready: say so on stderr, or, as a worker, tell the supervisor. */
static void
announce(struct serve *srv)
{
	if (srv->ready_fd >= 0) {
		ssize_t w = write(srv->ready_fd, "r", 1);
		(void)w; /* a supervisor that is gone will not miss it */
		close(srv->ready_fd);
		srv->ready_fd = -1;
		return;
	}
	serve_emit_listen(&srv->local);
}

int
serve_process(const struct serve_opts *o, const struct pbx_addr *addrs, int n,
    int ready_fd)
{
	return serve_worker_process(o, addrs, n, ready_fd, 0, NULL);
}

int
serve_worker_process(const struct serve_opts *o, const struct pbx_addr *addrs,
    int n, int ready_fd, unsigned worker, struct serve_limits *limits)
{
	struct serve srv = {.opts = o,
	    .listen_fd = -1,
	    .held_fd = -1,
	    .worker = worker,
	    .ready_fd = ready_fd,
	    .limit = o->max_conns,
	    .raw_accept = (o->handler->flags & SERVE_HANDLER_RAW_SOCKET) &&
			  o->nstages == 0 && o->proxy_versions == 0};
	struct sigaction ign = {.sa_handler = SIG_IGN};
	int r;

	/* A caller who vanishes mid-write is an error on that write only. */
	sigaction(SIGPIPE, &ign, NULL);
	r = serve_setup(&srv, addrs, n, limits);
	if (r == 0) {
		announce(&srv);
		srv.listen_io =
		    (struct pbx_io){.fd = srv.listen_fd, .data = &srv};
		r = run_model(&srv);
		/* Calls still open end (end=stopped) before the count. */
		serve_proxy_abort(&srv);
		serve_conns_abort(&srv);
		serve_emit_stop(srv.accepted);
	}
	if (srv.ready_fd >= 0)
		close(srv.ready_fd);
	serve_teardown(&srv);
	return r < 0 ? 1 : 0;
}

/*
 * Room for max_conns callers: the soft fd limit is often 1024 while the
 * hard one is far higher, so raise the soft one as far as needed (each
 * caller is an fd, or two while a program's idleness is watched).
 */
static void
raise_fd_limit(const struct serve_opts *o)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)o->max_conns * 2 + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
		return;
	rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
}

int
serve_run(const struct serve_opts *o)
{
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	struct pbx_addr addrs[8];

	/* Children must stay waitable: an inherited SIG_IGN would have the
	 * kernel reap them, and their exit statuses would be lost. */
	sigaction(SIGCHLD, &dfl, NULL);
	/* An fd we were started with (a shell's leak) must not reach the
	 * programs we run; marking them once spares a sweep per program. */
	pbx_cloexec_from(3);
	raise_fd_limit(o);

	if (o->workers > 0)
		return serve_workers_run(o);
	int n = serve_resolve(o, addrs, 8);
	if (n < 0)
		return 1;
	return serve_process(o, addrs, n, -1);
}
