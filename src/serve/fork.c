/* SPDX-License-Identifier: MIT */
/*
 * fork.c: the paper's second model: a child process per connection. The
 * parent accepts, forks, closes its copy of the socket and reaps; the
 * child runs the handler on a private loop (or, for a program, becomes it).
 */
#include "../cli/log.h"
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

static void
log_child_end(struct serve *srv, const struct serve_child *ch, int wstatus)
{
	char text[PBX_ADDR_STRLEN];

	if (log_level() < LOG_VERBOSE)
		return;
	pbx_addr_format(&ch->remote, text, sizeof text);
	log_event("end remote=%s pid=%ld %s=%d ms=%llu", text, (long)ch->pid,
	    WIFSIGNALED(wstatus) ? "signal" : "status",
	    WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : WEXITSTATUS(wstatus),
	    (unsigned long long)(pbx_loop_now(srv->loop) - ch->started_ms));
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
			log_child_end(srv, &srv->children[i], wstatus);
			srv->children[i] = srv->children[--srv->nchildren];
			break;
		}
	}
	serve_pause_accept(srv, srv->live >= srv->limit);
}

/* In the child: drop the parent's loop and listener, serve, exit. */
static void
child_main(struct serve *srv, int fd, const struct pbx_addr *remote)
{
	sigset_t none;

	if (srv->opts->handler == &serve_exec)
		serve_exec_become(srv, fd); /* no return */
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
	serve_conn_begin(srv, fd, remote);

	pbx_loop_run(srv->loop);
	_exit(0);
}

static void
log_accept(int fd, const struct pbx_addr *remote, pid_t pid)
{
	char rtext[PBX_ADDR_STRLEN], ltext[PBX_ADDR_STRLEN];
	struct pbx_addr local;

	if (log_level() < LOG_VERBOSE || pbx_addr_local(fd, &local) < 0)
		return;
	pbx_addr_format(remote, rtext, sizeof rtext);
	pbx_addr_format(&local, ltext, sizeof ltext);
	log_event("accept remote=%s local=%s pid=%ld", rtext, ltext, (long)pid);
}

static void
fork_one(struct serve *srv, int fd, const struct pbx_addr *remote)
{
	if (srv->opts->handler == &serve_exec)
		serve_exec_prepare(srv, fd, remote);
	pid_t pid = fork();
	if (pid == 0)
		child_main(srv, fd, remote);
	if (pid < 0) {
		log_error("fork: %s", pbx_strerror(-errno));
	} else {
		log_trace("fork() = %ld", (long)pid);
		srv->live++;
		/*
		 * Who a child serves matters only for the -v end line; without
		 * -v the parent writes less memory between forks, and each page
		 * it writes after a fork is a copy-on-write fault.
		 */
		if (log_level() >= LOG_VERBOSE)
			remember_child(srv, pid, remote);

		serve_pause_accept(srv, srv->live >= srv->limit);
		log_accept(fd, remote, pid);
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
