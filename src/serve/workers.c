/* SPDX-License-Identifier: MIT */
/*
 * workers.c: --workers N: a supervisor and N copies of a model, each with
 * its own SO_REUSEPORT listener, so the kernel spreads callers over them.
 * The supervisor holds the address (bound, not listening: it never gets a
 * caller), says "listening" once every worker listens, restarts a worker
 * that dies, and passes SIGTERM on.
 */
#include "../log/log.h"
#include "emit.h"
#include "ip_limits.h"
#include "serve.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define RESTART_DELAY_MS 1000 /* for a worker that dies young */

struct worker {
	pid_t pid; /* 0: not running */
	uint64_t started_ms;
};

struct supervisor {
	const struct serve_opts *o;
	struct pbx_loop *loop;
	struct pbx_addr addr; /* with the real port */
	int hold_fd;          /* bound to addr, never listening */
	int ready_r, ready_w; /* workers write a byte once listening */
	struct pbx_io ready_io;
	unsigned ready;
	bool announced, stopping;
	int status; /* exit status */
	struct worker *w;
	unsigned running;
	struct pbx_signal sig_term, sig_int, sig_chld, sig_hup;
	struct pbx_timer restart;
	/* Owned: --max-per-ip counts every worker's callers in one table
	 * that they share (MAP_SHARED, inherited by fork), or NULL. */
	struct serve_limits *limits;
};

static void
worker_main(struct supervisor *sv, pid_t parent, unsigned i)
{
	sigset_t none;

	/* A supervisor killed outright must not leave workers behind. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		_exit(0);
	pbx_loop_free(sv->loop);
	close(sv->hold_fd);
	close(sv->ready_r);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	_exit(serve_worker_process(
	    sv->o, &sv->addr, 1, sv->ready_w, i, sv->limits));
}

static int
worker_start(struct supervisor *sv, unsigned i)
{
	pid_t parent = getpid();
	pid_t pid = fork();

	if (pid == 0)
		worker_main(sv, parent, i);
	if (pid < 0) {
		int err = -errno;
		log_error("start worker %u: %s", i, pbx_strerror(err));
		return err;
	}
	log_trace("fork() = %ld (worker %u)", (long)pid, i);
	sv->w[i] =
	    (struct worker){.pid = pid, .started_ms = pbx_loop_now(sv->loop)};
	sv->running++;
	return 0;
}

/* Start every worker that is not running (after a death, or at first). */
static void
start_missing(struct supervisor *sv)
{
	for (unsigned i = 0; i < sv->o->workers && !sv->stopping; i++)
		if (sv->w[i].pid == 0 && worker_start(sv, i) < 0)
			pbx_timer_start(
			    sv->loop, &sv->restart, RESTART_DELAY_MS);
}

static void
on_restart(struct pbx_loop *loop, struct pbx_timer *t)
{
	(void)loop;
	start_missing(t->data);
}

static void
stop_all(struct supervisor *sv)
{
	sv->stopping = true;
	pbx_timer_stop(sv->loop, &sv->restart);
	for (unsigned i = 0; i < sv->o->workers; i++)
		if (sv->w[i].pid > 0)
			kill(sv->w[i].pid, SIGTERM);
	if (sv->running == 0)
		pbx_loop_stop(sv->loop);
}

static void
worker_died(struct supervisor *sv, unsigned i, int wstatus)
{
	bool young =
	    pbx_loop_now(sv->loop) - sv->w[i].started_ms < RESTART_DELAY_MS;
	pid_t pid = sv->w[i].pid;

	sv->w[i].pid = 0;
	sv->running--;
	/* Its callers died with it: their counts go, before a new one
	 * counts under the same number. */
	if (sv->limits != NULL)
		serve_limits_forget_worker(sv->limits, i);
	if (sv->stopping) {
		if (sv->running == 0)
			pbx_loop_stop(sv->loop);
		return;
	}
	if (!sv->announced) {
		/* It could not listen: its own message said why. */
		sv->status = 1;
		stop_all(sv);
		return;
	}
	log_error("worker %u (pid %ld) %s %d; starting another", i, (long)pid,
	    WIFSIGNALED(wstatus) ? "killed by signal" : "exited with status",
	    WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : WEXITSTATUS(wstatus));
	/* One that dies at once would die again at once: not in a spin. */
	if (young)
		pbx_timer_start(sv->loop, &sv->restart, RESTART_DELAY_MS);
	else
		start_missing(sv);
}

static void
on_sigchld(struct pbx_loop *loop, struct pbx_signal *s)
{
	struct supervisor *sv = s->data;
	int wstatus;

	(void)loop;
	for (;;) {
		pid_t pid = waitpid(-1, &wstatus, WNOHANG);
		if (pid <= 0)
			return;
		for (unsigned i = 0; i < sv->o->workers; i++)
			if (sv->w[i].pid == pid)
				worker_died(sv, i, wstatus);
	}
}

/* SIGHUP: every worker reads its rules again. */
static void
on_hup(struct pbx_loop *loop, struct pbx_signal *s)
{
	struct supervisor *sv = s->data;

	(void)loop;
	for (unsigned i = 0; i < sv->o->workers; i++)
		if (sv->w[i].pid > 0)
			kill(sv->w[i].pid, SIGHUP);
}

static void
on_stop(struct pbx_loop *loop, struct pbx_signal *s)
{
	(void)loop;
	stop_all(s->data);
}

static void
on_ready(struct pbx_loop *loop, struct pbx_io *w, unsigned events)
{
	struct supervisor *sv = w->data;
	char buf[64];

	(void)loop;
	(void)events;
	ssize_t n = pbx_read_some(w->fd, buf, sizeof buf);
	if (n > 0)
		sv->ready += (unsigned)n;
	if (!sv->announced && sv->ready >= sv->o->workers) {
		sv->announced = true;
		serve_emit_listen(&sv->addr);
	}
}

/* Bind the address once, here, so port 0 becomes one port for all. */
static int
hold_address(struct supervisor *sv, const struct pbx_addr *addrs, int n)
{
	struct pbx_listen_opts lo = {.reuseport = true, .bind_only = true};
	int fd = serve_listen_first(addrs, n, &lo);

	if (fd < 0)
		return fd;

	sv->hold_fd = fd;
	return pbx_addr_local(fd, &sv->addr);
}

/* Signals, the readiness pipe and the restart timer, on a new loop. */
static int
supervisor_watch(struct supervisor *sv)
{
	int fds[2];
	int r = pbx_loop_new(&sv->loop);

	if (r < 0)
		return r;
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	sv->ready_r = fds[0];
	sv->ready_w = fds[1];
	sv->sig_term =
	    (struct pbx_signal){.signo = SIGTERM, .cb = on_stop, .data = sv};
	sv->sig_int =
	    (struct pbx_signal){.signo = SIGINT, .cb = on_stop, .data = sv};
	sv->sig_chld =
	    (struct pbx_signal){.signo = SIGCHLD, .cb = on_sigchld, .data = sv};
	sv->sig_hup =
	    (struct pbx_signal){.signo = SIGHUP, .cb = on_hup, .data = sv};
	sv->ready_io =
	    (struct pbx_io){.fd = sv->ready_r, .cb = on_ready, .data = sv};
	sv->restart = (struct pbx_timer){.cb = on_restart, .data = sv};
	r = pbx_signal_start(sv->loop, &sv->sig_term);
	if (r == 0)
		r = pbx_signal_start(sv->loop, &sv->sig_int);
	if (r == 0)
		r = pbx_signal_start(sv->loop, &sv->sig_chld);
	if (r == 0)
		r = pbx_signal_start(sv->loop, &sv->sig_hup);
	if (r == 0)
		r = pbx_io_start(sv->loop, &sv->ready_io, PBX_READABLE);
	return r;
}

static int
supervisor_setup(struct supervisor *sv)
{
	struct pbx_addr addrs[8];
	int n = serve_resolve(sv->o, addrs, 8);

	if (n < 0 || hold_address(sv, addrs, n) < 0)
		return -1;
	sv->w = calloc(sv->o->workers, sizeof *sv->w);
	int r = sv->w == NULL ? -ENOMEM : supervisor_watch(sv);
	if (r == 0 && sv->o->max_per_ip > 0) {
		struct serve_limits_opts lo = {
		    .max_per_key = sv->o->max_per_ip,
		    .prefix4 = sv->o->prefix4,
		    .prefix6 = sv->o->prefix6,
		    .capacity = (size_t)sv->o->max_conns * sv->o->workers,
		    .workers = sv->o->workers,
		};
		r = serve_limits_new(&sv->limits, &lo);
	}
	if (r < 0) {
		log_error("start workers: %s", pbx_strerror(r));
		return -1;
	}
	return 0;
}

int
serve_workers_run(const struct serve_opts *o)
{
	struct supervisor sv = {
	    .o = o, .hold_fd = -1, .ready_r = -1, .ready_w = -1};

	if (supervisor_setup(&sv) == 0) {
		start_missing(&sv);
		if (pbx_loop_run(sv.loop) < 0)
			sv.status = 1;
	} else {
		sv.status = 1;
	}
	if (sv.hold_fd >= 0)
		close(sv.hold_fd);
	if (sv.ready_r >= 0)
		close(sv.ready_r);
	if (sv.ready_w >= 0)
		close(sv.ready_w);
	free(sv.w);
	if (sv.limits != NULL)
		serve_limits_free(sv.limits);
	pbx_loop_free(sv.loop);
	return sv.status;
}
