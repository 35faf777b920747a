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
#include <sys/wait.h>
#include <unistd.h>

static int
remember_child(struct serve *srv, pid_t pid, const struct pbx_addr *remote)
{
	if (srv->nchildren == srv->children_cap) {
		size_t cap = srv->children_cap ? srv->children_cap * 2 : 16;
		struct serve_child *t = realloc(srv->children, cap * sizeof *t);
		if (t == NULL)
			return -ENOMEM;
		srv->children = t;
		srv->children_cap = cap;
	}
	srv->children[srv->nchildren++] = (struct serve_child){
	    .pid = pid,
	    .remote = *remote,
	    .started_ms = pbx_loop_now(srv->loop),
	};
	return 0;
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
		serve_emit_end(&ch->remote, false, 0, 0, ms, 0);
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
			srv->children[i] = srv->children[--srv->nchildren];
			break;
		}
	}
	serve_pause_accept(srv, srv->live >= srv->limit);
}

static void
emit_accept(struct serve *srv, int fd, const struct pbx_addr *remote, pid_t pid)
{
	struct pbx_addr local = srv->local;

	if (pbx_addr_is_any(&local) && pbx_addr_local(fd, &local) < 0)
		return;
	serve_emit_accept(remote, &local, (long)pid);
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

	if (fast)
		srv->opts->handler->prepare(srv, fd, remote);
	pid_t pid = fork();
	if (pid == 0)
		child_main(srv, fd, remote, fast);
	if (pid < 0) {
		log_error("fork: %s", pbx_strerror(-errno));
	} else {
		log_trace("fork() = %ld", (long)pid);
		srv->live++;
		/*
		 * Who a child serves matters only for the -v lines; without
		 * -v the parent writes less memory between forks, and each
		 * page it writes after a fork is a copy-on-write fault.
		 */
		if (serve_emitting()) {
			remember_child(srv, pid, remote);
			/* A child that becomes a program emits nothing. */
			if (fast) {
				emit_accept(srv, fd, remote, pid);
				serve_emit_start(
				    remote, (long)pid, srv->opts->argv[0]);
			}
		}
		serve_pause_accept(srv, srv->live >= srv->limit);
	}
	/* The paper's c.close() in the parent: the child has its own copy. */
	log_trace("close(%d)", fd);
	close(fd);
}

int
serve_fork_run(struct serve *srv)
{
	srv->sig_chld = (struct pbx_signal){
	    .signo = SIGCHLD, .cb = on_sigchld, .data = srv};
	int r = pbx_signal_start(srv->loop, &srv->sig_chld);
	if (r < 0) {
		log_error("watch signals: %s", pbx_strerror(r));
		return r;
	}
	return serve_accept_loop(srv, fork_one);
}
