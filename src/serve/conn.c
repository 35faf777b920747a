/* SPDX-License-Identifier: MIT */
/* conn.c: the connection record: its phases, its I/O, its end. */
#include "../cli/log.h"
#include "serve.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static struct serve_conn *
conn_get(struct serve *srv)
{
	struct serve_conn *c = srv->pool;

	if (c != NULL)
		srv->pool = c->next_free;
	else
		c = malloc(sizeof *c);
	if (c == NULL)
		return NULL;
	memset(c, 0, sizeof *c);
	c->next_live = srv->conns;
	if (srv->conns != NULL)
		srv->conns->prev_live = c;
	srv->conns = c;
	return c;
}

static void
conn_put(struct serve *srv, struct serve_conn *c)
{
	if (c->prev_live != NULL)
		c->prev_live->next_live = c->next_live;
	else
		srv->conns = c->next_live;
	if (c->next_live != NULL)
		c->next_live->prev_live = c->prev_live;
	c->next_free = srv->pool;
	srv->pool = c;
}

#define LINGER_MS 1000

static void drain(struct serve_conn *c);

static void
on_ready(struct pbx_loop *loop, struct pbx_io *w, unsigned events)
{
	struct serve_conn *c = w->data;

	(void)loop;
	if (c->draining)
		drain(c);
	else
		c->srv->opts->handler->ready(c, events);
}

/* Read and drop what the caller still sends, until its end. */
static void
drain(struct serve_conn *c)
{
	for (;;) {
		ssize_t n = conn_read(c, c->srv->scratch, c->srv->scratch_size);
		if (n == -EAGAIN)
			return;
		if (n <= 0) {
			conn_end(c, n == 0 ? 0 : (int)n);
			return;
		}
	}
}

static void
on_linger_timeout(struct pbx_loop *loop, struct pbx_timer *t)
{
	(void)loop;
	conn_end(t->data, 0);
}

void
conn_finish(struct serve_conn *c)
{
	ssize_t n =
	    pbx_read_some(c->io.fd, c->srv->scratch, c->srv->scratch_size);

	if (n == 0 || n == -EAGAIN) {
		conn_end(c, 0); /* nothing unread: a plain close is clean */
		return;
	}
	if (n < 0) {
		conn_end(c, (int)n);
		return;
	}

	c->bytes_in += (uint64_t)n;
	free(c->pending); /* all written: the space becomes the timer */
	c->draining = true;
	c->linger = (struct pbx_timer){.cb = on_linger_timeout, .data = c};
	int r = conn_shutdown_write(c);
	if (r == 0)
		r = pbx_timer_start(c->srv->loop, &c->linger, LINGER_MS);
	if (r == 0)
		r = pbx_io_start(c->srv->loop, &c->io, PBX_READABLE);
	if (r < 0)
		conn_end(c, r);
}

void
serve_conn_begin(struct serve *srv, int fd, const struct pbx_addr *remote)
{
	struct serve_conn *c = conn_get(srv);
	char rtext[PBX_ADDR_STRLEN], ltext[PBX_ADDR_STRLEN];

	if (c == NULL) {
		log_error("accept: %s", pbx_strerror(-ENOMEM));
		close(fd);
		return;
	}
	/* Phase 1, accepted: the record knows both ends, nothing else ran. */
	c->io = (struct pbx_io){.fd = fd, .cb = on_ready, .data = c};
	c->srv = srv;
	c->remote = *remote;
	c->started_ms = pbx_loop_now(srv->loop);
	/* A listener on one address answers there: no getsockname needed. */
	if (!pbx_addr_is_any(&srv->local))
		c->local = srv->local;
	srv->live++;
	serve_pause_accept(srv, srv->live >= srv->limit);
	if (!srv->in_child && log_level() >= LOG_VERBOSE) {
		pbx_addr_format(&c->remote, rtext, sizeof rtext);
		pbx_addr_format(conn_local(c), ltext, sizeof ltext);
		log_event("accept remote=%s local=%s", rtext, ltext);
	}
	/* Phase 2, content: the handler takes over. */
	srv->opts->handler->start(c);
}

const struct pbx_addr *
conn_local(struct serve_conn *c)
{
	if (c->local.len == 0 && pbx_addr_local(c->io.fd, &c->local) < 0)
		c->local = c->srv->local;
	return &c->local;
}

ssize_t
conn_read(struct serve_conn *c, void *buf, size_t len)
{
	ssize_t n = pbx_read_some(c->io.fd, buf, len);

	if (n > 0)
		c->bytes_in += (uint64_t)n;
	if (n != -EAGAIN)
		log_trace("read(%d) = %zd", c->io.fd, n);
	return n;
}

ssize_t
conn_write(struct serve_conn *c, const void *buf, size_t len)
{
	ssize_t n = pbx_write_some(c->io.fd, buf, len);

	if (n > 0)
		c->bytes_out += (uint64_t)n;
	if (n != -EAGAIN)
		log_trace("write(%d, %zu bytes) = %zd", c->io.fd, len, n);
	return n;
}

int
conn_shutdown_write(struct serve_conn *c)
{
	return pbx_shutdown_write(c->io.fd);
}

void
conn_want(struct serve_conn *c, unsigned events)
{
	int r = pbx_io_start(c->srv->loop, &c->io, events);
	if (r < 0)
		conn_end(c, r);
}

int
conn_keep_pending(struct serve_conn *c, const char *buf, size_t len)
{
	if (c->pending == NULL) {
		c->pending = malloc(c->srv->scratch_size);
		if (c->pending == NULL)
			return -ENOMEM;
	}
	memmove(c->pending, buf, len);
	c->pending_off = 0;
	c->pending_len = (uint32_t)len;
	return 0;
}

int
conn_flush_pending(struct serve_conn *c)
{
	while (c->pending_off < c->pending_len) {
		ssize_t n = conn_write(c, c->pending + c->pending_off,
		    c->pending_len - c->pending_off);
		if (n < 0)
			return (int)n;
		c->pending_off += (uint32_t)n;
	}
	/* Drained: give the buffer back, an idle record stays small. */
	free(c->pending);
	c->pending = NULL;
	c->pending_off = c->pending_len = 0;
	return 0;
}

int
conn_fd(const struct serve_conn *c)
{
	return c->io.fd;
}

void
conn_close_fd(struct serve_conn *c)
{
	if (c->io.fd < 0)
		return;
	pbx_io_stop(c->srv->loop, &c->io);
	log_trace("close(%d)", c->io.fd);
	close(c->io.fd);
	c->io.fd = -1;
}

static void
conn_recycle(struct serve_conn *c)
{
	struct serve *srv = c->srv;

	conn_close_fd(c);
	if (srv->opts->handler->release != NULL)
		srv->opts->handler->release(c);
	if (c->program)
		pbx_child_stop(srv->loop, &c->child); /* it goes on alone */
	else if (c->draining)
		pbx_timer_stop(srv->loop, &c->linger);
	else
		free(c->pending);
	conn_put(srv, c);
	srv->live--;
	serve_pause_accept(srv, srv->live >= srv->limit);
}

void
conn_end(struct serve_conn *c, int err)
{
	char rtext[PBX_ADDR_STRLEN];
	uint64_t ms = pbx_loop_now(c->srv->loop) - c->started_ms;

	if (log_level() >= LOG_VERBOSE && !c->srv->in_child) {
		pbx_addr_format(&c->remote, rtext, sizeof rtext);
		log_event("end remote=%s in=%llu out=%llu ms=%llu%s%s", rtext,
		    (unsigned long long)c->bytes_in,
		    (unsigned long long)c->bytes_out, (unsigned long long)ms,
		    err < 0 ? " error=" : "", err < 0 ? pbx_strerror(err) : "");
	}
	conn_recycle(c);
}

void
serve_conns_abort(struct serve *srv)
{
	/* A running program keeps its socket and finishes on its own. */
	while (srv->conns != NULL)
		conn_recycle(srv->conns);
}

void
conn_watch_program(struct serve_conn *c, pid_t pid, pbx_child_cb cb)
{
	conn_close_fd(c);
	c->program = true;
	c->child = (struct pbx_child){.pid = pid, .cb = cb, .data = c};
	/* SIGCHLD brings its end: on_programs_ended. */
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

	for (;;) {
		pid_t pid = waitpid(-1, &wstatus, WNOHANG);
		if (pid <= 0)
			return;
		struct serve_conn *c = srv->conns;
		while (c != NULL && !(c->program && c->child.pid == pid))
			c = c->next_live;
		if (c != NULL)
			c->child.cb(loop, &c->child, wstatus);
	}
}

int
serve_watch_programs(struct serve *srv)
{
	srv->sig_chld = (struct pbx_signal){
	    .signo = SIGCHLD, .cb = on_programs_ended, .data = srv};
	return pbx_signal_start(srv->loop, &srv->sig_chld);
}

void
conn_end_program(struct serve_conn *c, int wstatus)
{
	char rtext[PBX_ADDR_STRLEN];
	uint64_t ms = pbx_loop_now(c->srv->loop) - c->started_ms;

	if (log_level() >= LOG_VERBOSE) {
		pbx_addr_format(&c->remote, rtext, sizeof rtext);
		log_event("end remote=%s pid=%ld %s=%d ms=%llu", rtext,
		    (long)c->child.pid,
		    WIFSIGNALED(wstatus) ? "signal" : "status",
		    WIFSIGNALED(wstatus) ? WTERMSIG(wstatus)
					 : WEXITSTATUS(wstatus),
		    (unsigned long long)ms);
	}
	conn_recycle(c);
}
