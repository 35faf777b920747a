/* SPDX-License-Identifier: MIT */
/*
 * fork.c: the paper's second model: a child process per connection. The
 * parent accepts, forks, closes its copy of the socket and reaps; the
 * child runs the handler on a private loop (or, for a program, becomes it).
 */
#include "../log/log.h"
#include "emit.h"
#include "serve.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/*
 * The parent must know its children for the -v lines, and to stop a
 * program that outlives its deadlines (a child that runs a handler
 * keeps its own). Without either, it writes less memory between forks,
 * and each page it writes after a fork is a copy-on-write fault.
 */
static bool
tracks_children(const struct serve *srv)
{
	const struct serve_opts *o = srv->opts;

	return serve_emitting() || srv->limits != NULL ||
	       (serve_fast_become(srv) && (o->idle_ms || o->total_ms));
}

static int
remember_child(
    struct serve *srv, pid_t pid, const struct pbx_addr *remote, int fd)
{
	if (srv->nchildren == srv->children_cap) {
		size_t cap = srv->children_cap ? srv->children_cap * 2 : 16;
		struct serve_child *t = realloc(srv->children, cap * sizeof *t);
		if (t == NULL)
			return -ENOMEM;
		srv->children = t;
		srv->children_cap = cap;
	}
	uint64_t now = pbx_loop_now(srv->loop);
	srv->children[srv->nchildren++] = (struct serve_child){
	    .pid = pid,
	    .fd = fd,
	    .remote = *remote,
	    .started_ms = now,
	    .active_ms = now,
	    .counted = srv->limits != NULL,
	};
	return 0;
}

/* ---- a program's deadlines, kept by the parent ---- */

/* When the child's next deadline is, on the loop's clock (0: none). */
static uint64_t
child_due(const struct serve *srv, const struct serve_child *ch)
{
	const struct serve_opts *o = srv->opts;

	/* A child that runs a handler keeps its deadlines itself. */
	if (ch->fd < 0)
		return 0;
	if (ch->expired != SERVE_LIVE)
		return ch->grace_ms;
	uint64_t due = o->total_ms ? ch->started_ms + o->total_ms : 0;
	if (o->idle_ms)
		due = serve_earliest(due, ch->active_ms + o->idle_ms);
	return due;
}

/* The timer fires by the earliest deadline of any child. */
static void
arm_children(struct serve *srv)
{
	uint64_t due = 0, now = pbx_loop_now(srv->loop);

	for (size_t i = 0; i < srv->nchildren; i++)
		due = serve_earliest(due, child_due(srv, &srv->children[i]));
	if (due == 0)
		return;
	if (srv->child_timer.slot != 0 && srv->child_timer.due_ms <= due)
		return;
	pbx_timer_start(
	    srv->loop, &srv->child_timer, due > now ? due - now : 0);
}

/* SIGTERM first, SIGKILL when the grace is over (or there is none). */
static void
stop_child(struct serve *srv, struct serve_child *ch, uint64_t now)
{
	const struct serve_opts *o = srv->opts;

	if (ch->expired == SERVE_LIVE) {
		bool total = o->total_ms && ch->started_ms + o->total_ms <= now;
		ch->expired = total ? SERVE_OVERDUE : SERVE_IDLE;
		if (o->kill_grace_ms > 0) {
			log_trace("kill(%ld, SIGTERM)", (long)ch->pid);
			kill(ch->pid, SIGTERM);
			ch->grace_ms = now + o->kill_grace_ms;
			return;
		}
	}
	log_trace("kill(%ld, SIGKILL)", (long)ch->pid);
	kill(ch->pid, SIGKILL);
	ch->grace_ms = 0;
	/* What the program left behind may hold the socket: end the call. */
	if (ch->fd >= 0)
		shutdown(ch->fd, SHUT_RDWR);
}

static void
on_child_timer(struct pbx_loop *loop, struct pbx_timer *t)
{
	struct serve *srv = t->data;
	uint64_t now = pbx_loop_now(loop);
	uint32_t idle;

	for (size_t i = 0; i < srv->nchildren; i++) {
		struct serve_child *ch = &srv->children[i];
		/* The program has the socket: the kernel says how idle. */
		if (ch->expired == SERVE_LIVE && ch->fd >= 0 &&
		    pbx_sock_idle_ms(ch->fd, &idle) == 0)
			ch->active_ms = now - (idle < now ? idle : now);
		uint64_t due = child_due(srv, ch);
		if (due != 0 && due <= now)
			stop_child(srv, ch, now);
	}
	arm_children(srv);
}

static void
forget_child(struct serve *srv, size_t i)
{
	if (srv->children[i].counted)
		serve_door_leave(srv, &srv->children[i].remote);
	if (srv->children[i].fd >= 0)
		close(srv->children[i].fd);
	srv->children[i] = srv->children[--srv->nchildren];
}

/*
 * A child ended. It served the connection itself (and emitted its end),
 * unless it became the program at once: then this is the connection's
 * end too, so that every connection has one in every model.
 */
static void
emit_child_end(struct serve *srv, const struct serve_child *ch, int wstatus)
{
	uint64_t ms = pbx_loop_now(srv->loop) - ch->started_ms;

	serve_emit_exit(&ch->remote, (long)ch->pid, wstatus, ms);
	if (serve_fast_become(srv))
		serve_emit_end(&ch->remote, false, 0, 0, ms,
		    serve_expiry_err((enum serve_expiry)ch->expired));
}

/* SIGCHLD: signals coalesce, so reap until nothing is left. */
static void
on_sigchld(struct pbx_loop *loop, struct pbx_signal *s)
{
	struct serve *srv = s->data;
	int wstatus;

	(void)loop;
	for (;;) {
		pid_t pid = waitpid(-1, &wstatus, WNOHANG);
		if (pid <= 0)
			break;
		/* Every child here is a caller's. */
		if (srv->live > 0)
			srv->live--;
		for (size_t i = 0; i < srv->nchildren; i++) {
			if (srv->children[i].pid != pid)
				continue;
			if (serve_emitting())
				emit_child_end(srv, &srv->children[i], wstatus);
			forget_child(srv, i);
			break;
		}
	}
	serve_procs_freed(srv);
	serve_pause_accept(srv, srv->live >= srv->limit);
}

static void
emit_accept(struct serve *srv, int fd, const struct pbx_addr *remote, pid_t pid)
{
	const struct serve_proxied *p = srv->proxied;
	struct pbx_addr local = srv->local;

	if (p != NULL && p->dest.len != 0)
		local = p->dest;
	else if (pbx_addr_is_any(&local) && pbx_addr_local(fd, &local) < 0)
		return;
	serve_emit_accept(
	    remote, p != NULL ? &p->via : NULL, &local, (long)pid);
}

/*
 * In the child: become the handler at once (a program, when no stage must
 * run first), or drop the parent's loop and listener, serve on a loop of
 * its own, and exit.
 */
static void
child_main(struct serve *srv, int fd, const struct pbx_addr *remote, bool fast)
{
	const struct serve_handler *h = srv->opts->handler;
	sigset_t none;

	if (fast) {
		serve_log_run_failed(srv, h->become(srv, fd));
		_exit(1);
	}
	close(srv->listen_fd);
	srv->listen_fd = -1;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	srv->in_child = true;
	if (log_tracing())
		log_tag_child((long)getpid());
	srv->live = 0;
	srv->limit = 1;
	/* Closes only this process's copies of the epoll fd and signalfd. */
	pbx_loop_free(srv->loop);
	if (pbx_loop_new(&srv->loop) < 0)
		_exit(1);
	if (h->attach != NULL && h->attach(srv) < 0)
		_exit(1);
	/*
	 * The child says it took the call: its end line then always follows
	 * its accept line, however the parent and the child are scheduled.
	 */
	if (serve_emitting())
		emit_accept(srv, fd, remote, getpid());
	serve_conn_begin(srv, fd, remote);
	pbx_loop_run(srv->loop);
	_exit(0);
}

static void
fork_one(struct serve *srv, int fd, const struct pbx_addr *remote)
{
	bool fast = serve_fast_become(srv);
	bool keep = fast && (srv->opts->idle_ms || srv->opts->total_ms);

	if (fast)
		srv->opts->handler->prepare(srv, fd, remote);
	pid_t pid = fork();
	if (pid == 0)
		child_main(srv, fd, remote, fast);
	if (pid < 0 && serve_is_out_of_procs(-errno)) {
		/* Held, not dropped: it gets its child once one can be had. */
		srv->held_fd = fd;
		srv->held_remote = *remote;
		serve_out_of_procs(srv, "fork", -errno);
		return;
	}
	if (pid < 0) {
		log_error("fork: %s", pbx_strerror(-errno));
		if (srv->limits != NULL)
			serve_door_leave(srv, remote);
	} else {
		log_trace("fork() = %ld", (long)pid);
		serve_procs_back(srv);
		srv->live++;
		/* A child that becomes a program emits nothing. */
		if (fast && serve_emitting()) {
			emit_accept(srv, fd, remote, pid);
			serve_emit_start(remote, (long)pid, srv->opts->argv[0]);
		}
		if (tracks_children(srv) &&
		    remember_child(srv, pid, remote, keep ? fd : -1) == 0) {
			if (keep)
				fd = -1; /* the child's entry owns it now */
			arm_children(srv);
		} else if (srv->limits != NULL) {
			/* Not remembered: its count could never come back. */
			serve_door_leave(srv, remote);
		}
		serve_pause_accept(srv, srv->live >= srv->limit);
	}
	/*
	 * The paper's c.close() in the parent: the child has its own copy.
	 * A program's socket is kept instead when deadlines are watched.
	 */
	if (fd >= 0) {
		log_trace("close(%d)", fd);
		close(fd);
	}
}

/* Out of processes a moment ago: try the held caller again. */
static void
retry_held(struct serve *srv)
{
	int fd = srv->held_fd;

	if (fd < 0) {
		serve_procs_back(srv);
		return;
	}
	srv->held_fd = -1;
	fork_one(srv, fd, &srv->held_remote);
}

int
serve_fork_run(struct serve *srv)
{
	srv->retry = retry_held;
	srv->sig_chld = (struct pbx_signal){
	    .signo = SIGCHLD, .cb = on_sigchld, .data = srv};
	srv->child_timer =
	    (struct pbx_timer){.cb = on_child_timer, .data = srv};
	int r = pbx_signal_start(srv->loop, &srv->sig_chld);
	if (r < 0) {
		log_error("watch signals: %s", pbx_strerror(r));
		return r;
	}
	return serve_accept_loop(srv, fork_one);
}
