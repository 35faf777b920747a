/* SPDX-License-Identifier: MIT */
/* relay.c: copy a local pair and a socket both ways, half-close included. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

#define RELAY_BUF 65536

/*
 * The relay runs on a private pbx_loop. The socket is non-blocking, so a
 * peer that stops reading never stops us from reading what it sends (a
 * blocking write there can deadlock against an echoing peer). The local
 * output stays as the caller set it: changing a terminal's O_NONBLOCK
 * would change it for the shell too. A local input that epoll cannot
 * watch (a regular file, /dev/null) is always ready: a zero timer stands
 * in for its readiness.
 */
struct relay {
	int in_fd, out_fd, sock_fd, flags;
	struct pbx_loop *loop;
	struct pbx_io in_io, sock_io;
	struct pbx_timer in_tick; /* when in_fd cannot be watched */
	bool in_pollable;
	char *up; /* owned: local -> socket */
	size_t up_off, up_len;
	bool in_eof, sock_eof, shut;
	char *down; /* owned: socket -> local */
	struct pbx_relay_stats *stats;
	int err, where;
};

static void
fail(struct relay *r, int err, int side)
{
	if (r->err == 0) {
		r->err = err;
		r->where = side;
	}
	pbx_loop_stop(r->loop);
}

/* Push pending local bytes into the socket as far as it takes them. */
static void
flush_up(struct relay *r)
{
	while (r->up_off < r->up_len) {
		ssize_t n = pbx_write_some(
		    r->sock_fd, r->up + r->up_off, r->up_len - r->up_off);
		if (n == -EAGAIN)
			return;
		if (n < 0) {
			fail(r, (int)n, 1);
			return;
		}
		r->up_off += (size_t)n;
		r->stats->to_socket += (uint64_t)n;
	}
	r->up_off = r->up_len = 0;
}

static void
read_local(struct relay *r)
{
	ssize_t n = pbx_read_some(r->in_fd, r->up, RELAY_BUF);

	if (n == -EAGAIN)
		return;
	if (n == -EBADF || n == 0) {
		r->in_eof = true;
		return;
	}
	if (n < 0) {
		fail(r, (int)n, 0);
		return;
	}
	r->up_len = (size_t)n;
	flush_up(r);
}

static void
read_socket(struct relay *r)
{
	ssize_t n = pbx_read_some(r->sock_fd, r->down, RELAY_BUF);

	if (n == -EAGAIN)
		return;
	if (n == 0) {
		r->sock_eof = true;
		return;
	}
	if (n < 0) {
		fail(r, (int)n, 1);
		return;
	}
	ssize_t w = pbx_write_all(r->out_fd, r->down, (size_t)n);
	if (w < 0) {
		fail(r, (int)w, 0);
		return;
	}
	r->stats->from_socket += (uint64_t)n;
}

/*
 * Done when the socket has ended and the bytes already read from the
 * local side have gone out (a peer that half-closed may still read them);
 * with WAIT_LOCAL, only when the local side has ended too.
 */
static bool
finished(const struct relay *r)
{
	bool local_done = r->in_eof && r->up_len == 0;

	if (!r->sock_eof || r->up_len > 0)
		return false;
	return !(r->flags & PBX_RELAY_WAIT_LOCAL) || local_done;
}

/* After every event: half-close if due, then watch what can move next. */
static void
update(struct relay *r)
{
	if (r->err != 0)
		return;
	if (finished(r)) {
		pbx_loop_stop(r->loop);
		return;
	}
	if (r->in_eof && r->up_len == 0 && !r->shut) {
		r->shut = true;
		int e = pbx_shutdown_write(r->sock_fd);
		if (e < 0 && e != -ENOTCONN) {
			fail(r, e, 1);
			return;
		}
	}
	/* After the socket's end, local input is read only with WAIT_LOCAL. */
	bool want_in = !r->in_eof && r->up_len == 0 &&
		       (!r->sock_eof || (r->flags & PBX_RELAY_WAIT_LOCAL));

	unsigned sock_ev = (r->sock_eof ? 0 : PBX_READABLE) |
			   (r->up_len > 0 ? PBX_WRITABLE : 0);
	int e = pbx_io_start(r->loop, &r->sock_io, sock_ev);
	if (e == 0 && r->in_pollable)
		e = pbx_io_start(
		    r->loop, &r->in_io, want_in ? PBX_READABLE : 0);
	else if (e == 0 && want_in)
		e = pbx_timer_start(r->loop, &r->in_tick, 0);
	else if (e == 0)
		pbx_timer_stop(r->loop, &r->in_tick);
	if (e < 0)
		fail(r, e, 0);
	else if (sock_ev == 0 && !want_in)
		pbx_loop_stop(r->loop); /* nothing left that could move */
}

static void
on_in(struct pbx_loop *loop, struct pbx_io *w, unsigned events)
{
	struct relay *r = w->data;

	(void)loop;
	(void)events;
	read_local(r);
	update(r);
}

static void
on_in_tick(struct pbx_loop *loop, struct pbx_timer *t)
{
	struct relay *r = t->data;

	(void)loop;
	read_local(r);
	update(r);
}

static void
on_sock(struct pbx_loop *loop, struct pbx_io *w, unsigned events)
{
	struct relay *r = w->data;

	(void)loop;
	if (events & PBX_WRITABLE)
		flush_up(r);
	if (r->err == 0 && (events & (PBX_READABLE | PBX_HANGUP)))
		read_socket(r);
	update(r);
}

static int
relay_setup(struct relay *r)
{
	int e = pbx_set_nonblock(r->sock_fd, true);

	if (e < 0)
		return e;
	r->up = malloc(RELAY_BUF);
	r->down = malloc(RELAY_BUF);
	if (r->up == NULL || r->down == NULL)
		return -ENOMEM;
	e = pbx_loop_new(&r->loop);
	if (e < 0)
		return e;
	r->sock_io =
	    (struct pbx_io){.fd = r->sock_fd, .cb = on_sock, .data = r};
	r->in_io = (struct pbx_io){.fd = r->in_fd, .cb = on_in, .data = r};
	r->in_tick = (struct pbx_timer){.cb = on_in_tick, .data = r};
	/* epoll refuses regular files and some devices (EPERM), and a
	 * closed stdin (EBADF) is simply at its end. */
	e = pbx_io_start(r->loop, &r->in_io, PBX_READABLE);
	r->in_pollable = e == 0;
	if (e == -EBADF)
		r->in_eof = true;
	else if (e < 0 && e != -EPERM)
		return e;
	return 0;
}

int
pbx_relay(int in_fd, int out_fd, int sock_fd, int flags,
    struct pbx_relay_stats *stats, int *where)
{
	struct pbx_relay_stats ignored = {0};
	struct relay r = {
	    .in_fd = in_fd,
	    .out_fd = out_fd,
	    .sock_fd = sock_fd,
	    .flags = flags,
	    .stats = stats != NULL ? stats : &ignored,
	};

	*r.stats = (struct pbx_relay_stats){0};
	int e = relay_setup(&r);
	if (e < 0) {
		r.err = e;
		r.where = 1;
	} else {
		update(&r);
		e = pbx_loop_run(r.loop);
		if (e < 0 && r.err == 0)
			r.err = e;
	}
	if (r.loop != NULL) {
		pbx_io_stop(r.loop, &r.in_io);
		pbx_io_stop(r.loop, &r.sock_io);
		pbx_loop_free(r.loop);
	}
	free(r.up);
	free(r.down);
	if (where != NULL && r.err != 0)
		*where = r.where;
	return r.err;
}
