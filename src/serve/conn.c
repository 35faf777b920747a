/* SPDX-License-Identifier: MIT */
/*
 * conn.c: what a connection goes through: accepted, the stages, the
 * handler's content, the end; its record, its deadline and its I/O
 * through the stream.
 */
#include "../log/event.h"
#include "../log/log.h"
#include "emit.h"
#include "serve.h"

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define CONN_POISON 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CONN_POISON 1
#endif
#endif
#ifdef CONN_POISON
#include <sanitizer/asan_interface.h>
#endif

/* Every field of the record is paid per idle connection. */
_Static_assert(sizeof(struct serve_conn) <= 216, "connection record grew");

#define LINGER_MS 1000

static struct serve_conn *
of_stream(struct pbx_stream *s)
{
	return (
	    struct serve_conn *)(void *)((char *)s -
					 offsetof(struct serve_conn, stream));
}

/* Milliseconds since the connection began (wraps after 49 days). */
static uint32_t
conn_now(const struct serve_conn *c)
{
	return (uint32_t)pbx_loop_now(c->srv->loop) - (uint32_t)c->started_ms;
}

/*
 * A free record is poisoned in the sanitizer build, all but its pool
 * link, so a use after the connection ended is caught.
 */
static void
poison(struct serve_conn *c, bool on)
{
#ifdef CONN_POISON
	char *rest = (char *)c + sizeof c->next;
	size_t len = sizeof *c - sizeof c->next;
	if (on)
		ASAN_POISON_MEMORY_REGION(rest, len);
	else
		ASAN_UNPOISON_MEMORY_REGION(rest, len);
#else
	(void)c;
	(void)on;
#endif
}

static struct serve_conn *
conn_get(struct serve *srv)
{
	struct serve_conn *c = srv->pool;

	if (c != NULL) {
		srv->pool = c->next;
		poison(c, false);
	} else {
		c = malloc(sizeof *c);
	}
	if (c == NULL)
		return NULL;
	memset(c, 0, sizeof *c);
	c->next = srv->conns;
	if (srv->conns != NULL)
		srv->conns->prev = c;
	srv->conns = c;
	return c;
}

/* Back to the pool: the connection is over and its stream closed. */
static void
conn_recycle(struct serve_conn *c)
{
	struct serve *srv = c->srv;

	/* c->u was a stage's if the handler never started. */
	if (c->handled && srv->opts->handler->release != NULL)
		srv->opts->handler->release(c);
	pbx_timer_stop(srv->loop, &c->timer);
	free(c->proxied);
	c->proxied = NULL;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->next = srv->pool;
	srv->pool = c;
	poison(c, true);
	/* A fork child serves one connection: its loop ends with it, even
	 * while a watcher (exec's SIGCHLD) would keep the loop running. */
	if (srv->in_child && srv->conns == NULL)
		pbx_loop_stop(srv->loop);
}

void
serve_conns_free(struct serve *srv)
{
	while (srv->pool != NULL) {
		struct serve_conn *c = srv->pool;
		poison(c, false);
		srv->pool = c->next;
		free(c);
	}
}

/* ---- the deadline ---- */

int
serve_expiry_err(enum serve_expiry why)
{
	switch (why) {
	case SERVE_LIVE:
		return 0;
	case SERVE_IDLE:
		return EVENT_ERR_IDLE;
	case SERVE_OVERDUE:
		return EVENT_ERR_OVERDUE;
	}
	return 0;
}

/*
 * The deadline that applies now, in ms since started_ms (0: none): the
 * phase's own (linger, a stage's limit, a program's grace) and the
 * server's idle and total limits. A program being stopped has only its
 * grace left.
 */
static uint32_t
conn_due(const struct serve_conn *c)
{
	const struct serve_opts *o = c->srv->opts;
	uint32_t due = c->due_ms;

	if (c->expired != SERVE_LIVE)
		return due;
	due = serve_earliest(due, o->total_ms);
	if (o->idle_ms > 0)
		due = serve_earliest(due, c->active_ms + o->idle_ms);
	return due;
}

/*
 * Make sure the timer fires by the deadline. The heap is touched only
 * when it would fire too late: activity moves the idle deadline later
 * for free, and the timer re-arms itself when it finds it moved.
 */
static int
conn_arm(struct serve_conn *c)
{
	uint32_t due = conn_due(c), now = conn_now(c);

	if (due == 0)
		return 0;
	uint32_t ms = due > now ? due - now : 0;
	uint64_t at = pbx_loop_now(c->srv->loop) + ms;
	if (c->timer.slot != 0 && c->timer.due_ms <= at)
		return 0;
	return pbx_timer_start(c->srv->loop, &c->timer, ms);
}

/* The phase's own deadline, ms from now. */
static int
conn_set_deadline(struct serve_conn *c, uint32_t ms)
{
	c->due_ms = conn_now(c) + ms;
	if (c->due_ms == 0)
		c->due_ms = 1;
	return conn_arm(c);
}

/*
 * A program has the socket, so its bytes pass us by: the kernel's count
 * of how long the socket moved nothing stands in for our own.
 */
static void
program_activity(struct serve_conn *c, uint32_t now)
{
	uint32_t idle;

	if (c->u.prog.fd >= 0 && pbx_sock_idle_ms(c->u.prog.fd, &idle) == 0)
		c->active_ms = now - (idle < now ? idle : now);
}

/* Which limit has passed (a stage's own counts as overdue). */
static enum serve_expiry
why_expired(const struct serve_conn *c, uint32_t now)
{
	const struct serve_opts *o = c->srv->opts;
	bool idle = o->idle_ms > 0 && c->active_ms + o->idle_ms <= now;
	bool total = o->total_ms > 0 && o->total_ms <= now;

	return idle && !total ? SERVE_IDLE : SERVE_OVERDUE;
}

/*
 * A program past its deadline is asked to stop (SIGTERM), then made to
 * (SIGKILL) when its grace is over; its exit ends the call.
 */
static void
program_expire(struct serve_conn *c, uint32_t now)
{
	const struct serve_opts *o = c->srv->opts;
	pid_t pid = c->u.prog.pid;

	if (c->expired == SERVE_LIVE) {
		c->expired = (uint8_t)why_expired(c, now);
		c->due_ms = 0;
		if (o->kill_grace_ms > 0) {
			log_trace("kill(%ld, SIGTERM)", (long)pid);
			kill(pid, SIGTERM);
			conn_set_deadline(c, o->kill_grace_ms);
			return;
		}
	}
	log_trace("kill(%ld, SIGKILL)", (long)pid);
	kill(pid, SIGKILL);
	c->due_ms = 0;
	/* A process the program left behind may hold the socket too: the
	 * caller's call ends now all the same. */
	if (c->u.prog.fd >= 0)
		shutdown(c->u.prog.fd, SHUT_RDWR);
}

static void
on_deadline(struct pbx_loop *loop, struct pbx_timer *t)
{
	struct serve_conn *c = t->data;
	uint32_t now = conn_now(c);

	if (c->phase == CONN_PROGRAM && c->expired == SERVE_LIVE)
		program_activity(c, now);
	uint32_t due = conn_due(c);
	if (due == 0)
		return;
	if (now < due) { /* moved later since the timer was set */
		pbx_timer_start(loop, t, due - now);
		return;
	}
	if (c->phase == CONN_PROGRAM) {
		program_expire(c, now);
		return;
	}
	/* A linger that ran out has drained enough: a clean end. */
	if (c->phase == CONN_LINGER && c->due_ms != 0 && c->due_ms <= now) {
		conn_end(c, 0);
		return;
	}
	conn_end(c, serve_expiry_err(why_expired(c, now)));
}

/* ---- the stream's callbacks, one table for every connection ---- */

static void
on_alloc(struct pbx_stream *s, char **buf, size_t *len)
{
	struct serve *srv = of_stream(s)->srv;

	*buf = srv->scratch;
	*len = srv->scratch_size;
}

/* Linger: read and drop the caller's last bytes, until its end. */
static void
linger_read(struct serve_conn *c, ssize_t n)
{
	if (n <= 0)
		conn_end(c, (int)n);
}

static void
on_read(struct pbx_stream *s, ssize_t n, char *buf)
{
	struct serve_conn *c = of_stream(s);

	c->active_ms = conn_now(c);
	log_trace("read(%d) = %zd", s->io.fd, n);
	if (c->phase == CONN_LINGER)
		linger_read(c, n);
	else if (c->phase == CONN_CONTENT && c->srv->opts->handler->read)
		c->srv->opts->handler->read(c, n, buf);
}

static void
on_closed(struct pbx_stream *s, int status)
{
	(void)status;
	conn_recycle(of_stream(s));
}

static const struct pbx_stream_ops conn_ops = {
    .alloc = on_alloc,
    .read = on_read,
    .shutdown = NULL,
    .close = on_closed,
};

/* ---- the phases ---- */

static void
conn_content(struct serve_conn *c)
{
	c->phase = CONN_CONTENT;
	c->due_ms = 0; /* a stage's limit was the stage's */
	c->handled = true;
	c->srv->opts->handler->start(c);
}

/* Run the stages from where the connection is; then the content. */
static void
conn_advance(struct serve_conn *c)
{
	const struct serve_opts *o = c->srv->opts;

	c->phase = CONN_STAGES;
	switch (serve_stages_run(o->stages, o->nstages, &c->stage, c)) {
	case SERVE_NEXT:
		conn_content(c);
		return;
	case SERVE_WAIT:
		return;
	case SERVE_END:
		conn_end(c, 0);
		return;
	}
}

void
conn_resume(struct serve_conn *c, enum serve_verdict v)
{
	switch (v) {
	case SERVE_NEXT:
		c->stage++;
		conn_advance(c);
		return;
	case SERVE_WAIT:
		return;
	case SERVE_END:
		conn_end(c, 0);
		return;
	}
}

void
serve_conn_begin(struct serve *srv, int fd, const struct pbx_addr *remote)
{
	struct serve_conn *c = conn_get(srv);

	/* The door counted it at accept (a fork child's is the parent's). */
	bool counted = srv->limits != NULL && !srv->in_child;

	if (c == NULL) {
		log_error("accept: %s", pbx_strerror(-ENOMEM));
		if (counted)
			serve_door_leave(srv, remote);
		close(fd);
		return;
	}
	pbx_stream_init(&c->stream, srv->loop, fd, NULL, &conn_ops);
	c->srv = srv;
	c->remote = *remote;
	c->started_ms = (uint32_t)pbx_loop_now(srv->loop);
	c->timer = (struct pbx_timer){.cb = on_deadline, .data = c};
	c->phase = CONN_ACCEPTED;
	c->counted = counted;
	if (srv->proxied != NULL) {
		c->proxied = malloc(sizeof *c->proxied);
		if (c->proxied != NULL)
			*c->proxied = *srv->proxied;
	}
	srv->live++;
	serve_pause_accept(srv, srv->live >= srv->limit);
	/* A fork child's accept was the parent's event. */
	if (!srv->in_child && serve_emitting()) {
		struct pbx_addr local;
		conn_local(c, &local);
		serve_emit_accept(remote,
		    c->proxied != NULL ? &c->proxied->via : NULL, &local, 0);
	}
	int r = conn_arm(c);
	if (r < 0) {
		conn_end(c, r);
		return;
	}
	conn_advance(c);
}

/*
 * The record is closing. A connection that ends in a stage lets the stage
 * go of what it holds, once: a cancel that ends it again finds it closing.
 */
static void
close_phase(struct serve_conn *c)
{
	bool in_stage = c->phase == CONN_STAGES;

	c->phase = CONN_CLOSING;
	if (in_stage) {
		const struct serve_stage *st = c->srv->opts->stages[c->stage];
		if (st->cancel != NULL)
			st->cancel(c);
	}
}

/* The end event; a program's bytes were its own, so they are not told. */
static void
emit_end(const struct serve_conn *c, int err)
{
	const struct pbx_stream *s = &c->stream;

	if (serve_emitting())
		serve_emit_end(&c->remote, c->phase != CONN_PROGRAM,
		    s->bytes_in, s->bytes_out, conn_now(c), err);
}

/* The door's count of this caller, given back once. */
static void
leave(struct serve_conn *c)
{
	if (c->counted) {
		c->counted = false;
		serve_door_leave(c->srv, &c->remote);
	}
}

/* Our copy of a program's socket, kept only to watch it. */
static void
close_program_fd(struct serve_conn *c)
{
	if (c->u.prog.fd >= 0) {
		log_trace("close(%d)", c->u.prog.fd);
		close(c->u.prog.fd);
		c->u.prog.fd = -1;
	}
}

void
conn_end(struct serve_conn *c, int err)
{
	struct serve *srv = c->srv;

	if (c->phase == CONN_CLOSING)
		return;
	emit_end(c, err);
	bool released = c->phase == CONN_PROGRAM;
	close_phase(c);
	leave(c);
	c->due_ms = 0;
	srv->live--;
	serve_pause_accept(srv, srv->live >= srv->limit);
	if (released) {
		close_program_fd(c);
		conn_recycle(c); /* the program had the socket */
		return;
	}
	log_trace("close(%d)", c->stream.io.fd);
	pbx_stream_close(&c->stream); /* then on_closed recycles it */
}

void
conn_finish(struct serve_conn *c)
{
	struct serve *srv = c->srv;
	ssize_t n =
	    pbx_stream_try_read(&c->stream, srv->scratch, srv->scratch_size);

	if (n == 0 || n == -EAGAIN) {
		conn_end(c, 0); /* nothing unread: a plain close is clean */
		return;
	}
	if (n < 0) {
		conn_end(c, (int)n);
		return;
	}
	c->phase = CONN_LINGER;
	int r = pbx_stream_shutdown(&c->stream);
	if (r == 0)
		r = conn_set_deadline(c, LINGER_MS);
	if (r == 0)
		r = pbx_stream_read_start(&c->stream);
	if (r < 0)
		conn_end(c, r);
}

void
serve_conns_abort(struct serve *srv)
{
	/*
	 * The loop has stopped: a stream's close would never be delivered,
	 * so records are recycled here. A running program keeps its socket
	 * and finishes on its own.
	 */
	while (srv->conns != NULL) {
		struct serve_conn *c = srv->conns;
		if (c->phase != CONN_CLOSING && c->phase != CONN_PROGRAM) {
			emit_end(c, -ECANCELED); /* end=stopped */
			close_phase(c);
			leave(c);
			pbx_stream_close(&c->stream);
			srv->live--;
		}
		if (c->phase == CONN_PROGRAM)
			close_program_fd(c);
		conn_recycle(c);
	}
}

/* ---- handler I/O ---- */

int
conn_read_start(struct serve_conn *c)
{
	return pbx_stream_read_start(&c->stream);
}

void
conn_read_stop(struct serve_conn *c)
{
	pbx_stream_read_stop(&c->stream);
}

static void
on_sent(struct pbx_stream *s, struct pbx_write *w, int status)
{
	struct serve_conn *c = of_stream(s);

	(void)w;
	if (status == -ECANCELED)
		return;
	if (status < 0) {
		conn_end(c, status);
		return;
	}
	c->active_ms = conn_now(c);
	if (pbx_stream_queued(s) == 0 && c->srv->opts->handler->sent != NULL)
		c->srv->opts->handler->sent(c);
}

int
conn_send(struct serve_conn *c, const void *buf, size_t len)
{
	ssize_t n = pbx_stream_try_write(&c->stream, buf, len);

	if (n != -EAGAIN)
		log_trace(
		    "write(%d, %zu bytes) = %zd", c->stream.io.fd, len, n);
	if (n > 0)
		c->active_ms = conn_now(c);
	if (n == (ssize_t)len)
		return 0;
	if (n < 0 && n != -EAGAIN)
		return (int)n;
	size_t sent = n > 0 ? (size_t)n : 0;
	return pbx_stream_write_copy(
	    &c->stream, (const char *)buf + sent, len - sent, on_sent);
}

size_t
conn_queued(const struct serve_conn *c)
{
	return pbx_stream_queued(&c->stream);
}

void
conn_local(const struct serve_conn *c, struct pbx_addr *out)
{
	if (c->proxied != NULL && c->proxied->dest.len != 0) {
		*out = c->proxied->dest; /* what the client reached */
		return;
	}
	/* A listener on one address answers there: no getsockname. */
	if (!pbx_addr_is_any(&c->srv->local) ||
	    pbx_addr_local(c->stream.io.fd, out) < 0)
		*out = c->srv->local;
}

int
conn_fd(const struct serve_conn *c)
{
	return c->stream.io.fd;
}

/* ---- programs ---- */

void
conn_give_to_program(struct serve_conn *c, pid_t pid)
{
	int fd = pbx_stream_release_fd(&c->stream);

	log_trace("spawn(%s) = %ld", c->srv->opts->argv[0], (long)pid);
	if (serve_emitting())
		serve_emit_start(&c->remote, pid, c->srv->opts->argv[0]);
	c->phase = CONN_PROGRAM;
	c->u.prog.pid = pid;
	c->u.prog.fd = -1;
	/*
	 * The program has the socket now. Under a deadline our copy is kept
	 * to see how long it has been idle and to end the call for sure
	 * (so the call lasts until the program exits, not until it closes
	 * its copies); else it goes.
	 */
	if (c->srv->opts->idle_ms > 0 || c->srv->opts->total_ms > 0) {
		c->u.prog.fd = fd;
		return;
	}
	log_trace("close(%d)", fd);
	close(fd);
}

void
conn_program_failed(struct serve_conn *c, int err)
{
	serve_log_run_failed(c->srv, err);
	conn_end(c, err);
}

/*
 * SIGCHLD: reap every program that ended and end its connection. One
 * signalfd for all programs costs fewer calls per program than a pidfd
 * each (pidfd_open, epoll_ctl, close). Only programs are this process's
 * children under these models, so waiting for any child steals nothing;
 * the connections in progress are the programs, found by pid.
 */
static void
on_programs_ended(struct pbx_loop *loop, struct pbx_signal *s)
{
	struct serve *srv = s->data;
	int wstatus;

	(void)loop;
	for (;;) {
		pid_t pid = waitpid(-1, &wstatus, WNOHANG);
		if (pid <= 0)
			return;
		struct serve_conn *c = srv->conns;
		while (c != NULL &&
		       !(c->phase == CONN_PROGRAM && c->u.prog.pid == pid))
			c = c->next;
		if (c == NULL)
			continue;
		if (serve_emitting())
			serve_emit_exit(&c->remote, pid, wstatus, conn_now(c));
		conn_end(c, serve_expiry_err(c->expired));
		serve_procs_freed(srv);
	}
}

int
serve_watch_programs(struct serve *srv)
{
	srv->sig_chld = (struct pbx_signal){
	    .signo = SIGCHLD, .cb = on_programs_ended, .data = srv};
	return pbx_signal_start(srv->loop, &srv->sig_chld);
}
