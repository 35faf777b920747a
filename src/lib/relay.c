/* SPDX-License-Identifier: MIT */
/*
 * relay.c: bytes both ways between two sides on the loop, half-close
 * carried; and pbx_relay, the same on a private loop for simple callers.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define RELAY_BUF 65536
/*
 * Bytes copied per write into a socket. Measured on loopback (bench/run.py
 * bulk): from a pipe into TCP, 16 KiB writes moved 2.2x the bytes of 64
 * KiB writes, or of splice(2), at 0.4x the CPU; out of a socket into a
 * pipe, splice(2) moved 1.6x what copying 64 KiB did.
 */
#define RELAY_SOCK_CHUNK 16384
/* Pipe-fulls one direction splices per wake-up before the loop goes on
 * to others (level-triggered: the rest waits for the next pass). */
#define SPLICE_ROUNDS 16

enum { A_TO_B, B_TO_A };

/* Which side a direction reads from (0 A, 1 B) and writes to. */
static int
side_from(int d)
{
	return d == A_TO_B ? 0 : 1;
}

static int
side_to(int d)
{
	return d == A_TO_B ? 1 : 0;
}

static struct pbx_stream **
streams(struct pbx_relay *r, int i)
{
	struct pbx_stream **all[4] = {&r->a_in, &r->a_out, &r->b_in, &r->b_out};
	return all[i];
}

static int
dir_of_reader(const struct pbx_relay *r, const struct pbx_stream *s)
{
	return r->dir[A_TO_B].from == s ? A_TO_B : B_TO_A;
}

static void
close_pipe(struct pbx_relay_dir *x)
{
	if (!x->splicing)
		return;
	x->splicing = false;
	close(x->pipe[0]);
	close(x->pipe[1]);
}

static bool
splices(const struct pbx_relay *r, const struct pbx_stream *s)
{
	for (int d = 0; d < 2; d++)
		if (r->dir[d].splicing &&
		    (r->dir[d].from == s || r->dir[d].to == s))
			return true;
	return false;
}

/* Give the streams back their owner's callbacks; free idle buffers. */
static void
finish(struct pbx_relay *r)
{
	r->running = false;
	pbx_stream_read_stop(r->a_in);
	pbx_stream_read_stop(r->b_in);
	for (int i = 0; i < 4; i++) {
		struct pbx_stream *s = *streams(r, i);
		if (splices(r, s))
			pbx__stream_poll(s, 0);
	}
	/* Bytes still in a pipe are lost only to an error. */
	close_pipe(&r->dir[A_TO_B]);
	close_pipe(&r->dir[B_TO_A]);
	for (int i = 3; i >= 0; i--) {
		struct pbx_stream *s = *streams(r, i);
		s->ops = r->saved_ops[i];
		s->data = r->saved_data[i];
	}
	for (int d = 0; d < 2; d++) {
		/* A write still queued reads its buffer: freed when done. */
		if (!r->dir[d].writing) {
			free(r->dir[d].buf);
			r->dir[d].buf = NULL;
		}
	}
	r->a_to_b = r->dir[A_TO_B].bytes;
	r->b_to_a = r->dir[B_TO_A].bytes;
	if (!r->starting) /* a failure inside start is its return value */
		r->cb(r);
}

static void
fail(struct pbx_relay *r, int err, int side)
{
	if (!r->running)
		return;
	r->err = err;
	r->where = side;
	finish(r);
}

/*
 * Done when both directions have ended and are written; with END_WITH_B,
 * once B's input has ended and nothing is in flight either way.
 */
static void
check_done(struct pbx_relay *r)
{
	const struct pbx_relay_dir *ab = &r->dir[A_TO_B], *ba = &r->dir[B_TO_A];

	if (!r->running || ab->writing || ba->writing || !ba->ended)
		return;
	/* An end carried over is part of the relay: its FIN is out. */
	if ((ab->shut && !ab->shut_done) || (ba->shut && !ba->shut_done))
		return;
	if (ab->ended || (r->flags & PBX_RELAY_END_WITH_B))
		finish(r);
}

/* The end of a direction's input becomes the end of its output. */
static void
carry_end(struct pbx_relay *r, int d)
{
	struct pbx_relay_dir *x = &r->dir[d];

	if (!x->ended || x->writing || x->shut)
		return;
	x->shut = true;
	int e = pbx_stream_shutdown(x->to);
	if (e < 0)
		fail(r, e, side_to(d));
}

/* With END_WITH_B, A's input no longer matters once B's has ended. */
static bool
moot(const struct pbx_relay *r, int d)
{
	return d == A_TO_B && (r->flags & PBX_RELAY_END_WITH_B) &&
	       r->dir[B_TO_A].ended;
}

/* Watch for each splicing direction what it waits for. */
static void
repoll(struct pbx_relay *r)
{
	for (int i = 0; i < 4 && r->running; i++) {
		struct pbx_stream *s = *streams(r, i);
		unsigned want = 0;
		if (!splices(r, s))
			continue;
		for (int d = 0; d < 2; d++) {
			const struct pbx_relay_dir *x = &r->dir[d];
			if (!x->splicing)
				continue;
			if (x->from == s && x->wait == PBX_READABLE)
				want |= PBX_READABLE;
			if (x->to == s && x->wait == PBX_WRITABLE)
				want |= PBX_WRITABLE;
		}
		int e = pbx__stream_poll(s, want);
		if (e < 0)
			fail(r, e, i < 2 ? 0 : 1);
	}
}

/* Read on in this direction unless it waits, has ended, or is moot. */
static void
resume(struct pbx_relay *r, int d)
{
	struct pbx_relay_dir *x = &r->dir[d];

	if (!r->running || x->ended || x->writing || moot(r, d))
		return;
	if (x->splicing) {
		x->wait = PBX_READABLE;
		repoll(r);
		return;
	}
	int e = pbx_stream_read_start(x->from);
	if (e == -EBADF) { /* a closed input is at its end */
		x->ended = true;
		carry_end(r, d);
	} else if (e < 0) {
		fail(r, e, side_from(d));
	}
}

/* A direction's input is at its end: carry it, and maybe end. */
static void
input_ended(struct pbx_relay *r, int d)
{
	struct pbx_relay_dir *ab = &r->dir[A_TO_B];

	r->dir[d].ended = true;
	if (moot(r, A_TO_B) && ab->splicing && ab->wait == PBX_READABLE) {
		ab->wait = 0;
		repoll(r);
	} else if (moot(r, A_TO_B)) {
		pbx_stream_read_stop(r->a_in);
	}
	carry_end(r, d);
	check_done(r);
}

static void
on_written(struct pbx_stream *s, struct pbx_write *w, int status)
{
	struct pbx_relay *r = w->data;
	int d = w == &r->dir[A_TO_B].w ? A_TO_B : B_TO_A;
	struct pbx_relay_dir *x = &r->dir[d];

	(void)s;
	x->writing = false;
	if (!r->running) {
		free(x->buf);
		x->buf = NULL;
		return;
	}
	if (status < 0) {
		fail(r, status, side_to(d));
		return;
	}
	x->bytes += w->len;
	carry_end(r, d);
	resume(r, d);
	check_done(r);
}

/* Bytes read: write what the other side takes now, queue the rest. */
static void
pass_on(struct pbx_relay *r, int d, char *buf, size_t n)
{
	struct pbx_relay_dir *x = &r->dir[d];
	ssize_t w = pbx_stream_try_write(x->to, buf, n);

	if (w == (ssize_t)n) {
		x->bytes += n;
		return;
	}
	if (w < 0 && w != -EAGAIN) {
		fail(r, (int)w, side_to(d));
		return;
	}
	size_t sent = w > 0 ? (size_t)w : 0;
	x->bytes += sent;
	x->w = (struct pbx_write){
	    .buf = buf + sent, .len = n - sent, .cb = on_written, .data = r};
	/* Backpressure: no more reading until the other side has taken it. */
	x->writing = true;
	pbx_stream_read_stop(x->from);
	int e = pbx_stream_write(x->to, &x->w);
	if (e < 0) {
		x->writing = false;
		fail(r, e, side_to(d));
	}
}

static void
on_alloc(struct pbx_stream *s, char **buf, size_t *len)
{
	struct pbx_relay *r = s->data;

	const struct pbx_relay_dir *x = &r->dir[dir_of_reader(r, s)];

	*buf = x->buf;
	*len = x->chunk;
}

static void
on_read(struct pbx_stream *s, ssize_t n, char *buf)
{
	struct pbx_relay *r = s->data;
	int d = dir_of_reader(r, s);

	if (n > 0) {
		pass_on(r, d, buf, (size_t)n);
		return;
	}
	/* A closed local input (EBADF) is simply at its end. */
	if (n < 0 && n != -EBADF) {
		fail(r, (int)n, side_from(d));
		return;
	}
	input_ended(r, d);
}

/* A carried end went out (the FIN is sent): the direction is over. */
static void
on_shutdown(struct pbx_stream *s, int status)
{
	struct pbx_relay *r = s->data;

	for (int d = 0; d < 2; d++) {
		struct pbx_relay_dir *x = &r->dir[d];
		if (x->to != s || !x->shut || x->shut_done)
			continue;
		x->shut_done = true;
		if (status < 0) {
			fail(r, status, side_to(d));
			return;
		}
	}
	check_done(r);
}

/* ---- splice(2): from, into the direction's pipe, on into to ---- */

enum fd_kind { FD_OTHER, FD_PIPE, FD_SOCKET };

/* A stream's fd as splice(2) sees it: a pipe, a non-blocking socket (a
 * blocking pipe is fine: every splice says SPLICE_F_NONBLOCK, which
 * covers pipes, not sockets), or anything else. */
static enum fd_kind
fd_kind(const struct pbx_stream *s)
{
	struct stat st;

	if (!s->tr->plain || s->tr->has_buffered != NULL ||
	    fstat(s->io.fd, &st) < 0)
		return FD_OTHER;
	if (S_ISFIFO(st.st_mode))
		return FD_PIPE;
	int fl = fcntl(s->io.fd, F_GETFL);
	if (S_ISSOCK(st.st_mode) && fl >= 0 && (fl & O_NONBLOCK))
		return FD_SOCKET;
	return FD_OTHER;
}

/* Splice into a pipe (and, if asked, a socket); copy into a socket in
 * small writes (see above). */
static void
choose_mover(struct pbx_relay *r, int d)
{
	struct pbx_relay_dir *x = &r->dir[d];
	enum fd_kind to = fd_kind(x->to);

	x->chunk = to == FD_SOCKET ? RELAY_SOCK_CHUNK : RELAY_BUF;
	bool into =
	    to == FD_PIPE || (to == FD_SOCKET && (r->flags & PBX_RELAY_SPLICE));
	/* Bytes the owner queued on the output go first, so copy. */
	if ((r->flags & PBX_RELAY_COPY) || x->to->wq != NULL || !into ||
	    fd_kind(x->from) == FD_OTHER)
		return;
	x->splicing = pipe2(x->pipe, O_NONBLOCK | O_CLOEXEC) == 0;
}

/* splice(2) without blocking: a count or -errno. */
static ssize_t
splice_some(int from, int to, size_t len)
{
	for (;;) {
		ssize_t n = splice(from, NULL, to, NULL, len,
		    SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n >= 0)
			return n;
		if (errno != EINTR)
			return -errno;
	}
}

/* An input splice(2) does not take (EINVAL): copy instead, from now. */
static void
copy_instead(struct pbx_relay *r, int d)
{
	struct pbx_relay_dir *x = &r->dir[d];

	close_pipe(x);
	x->buf = malloc(x->chunk);
	if (x->buf == NULL) {
		fail(r, -ENOMEM, side_from(d));
		return;
	}
	repoll(r);
	resume(r, d);
}

/*
 * Move what one direction can: empty the pipe into the output, then fill
 * it from the input, and again. The pipe is filled only when empty, so a
 * fill's EAGAIN means the input has nothing and a drain's means the
 * output is full: each waits for the one fd that can end it.
 */
static void
splice_on(struct pbx_relay *r, int d)
{
	struct pbx_relay_dir *x = &r->dir[d];
	int rounds = 0;

	while (r->running) {
		if (x->in_pipe > 0) {
			ssize_t n =
			    splice_some(x->pipe[0], x->to->io.fd, x->in_pipe);
			if (n == -EAGAIN) {
				x->wait = PBX_WRITABLE;
				break;
			}
			if (n <= 0) {
				fail(r, n < 0 ? (int)n : -EIO, side_to(d));
				return;
			}
			x->in_pipe -= (uint32_t)n;
			x->bytes += (uint64_t)n;
			x->to->bytes_out += (uint64_t)n;
			continue;
		}
		x->writing = false;
		x->wait = 0;
		if (x->ended || moot(r, d)) {
			carry_end(r, d);
			check_done(r);
			return;
		}
		if (rounds++ == SPLICE_ROUNDS) {
			x->wait = PBX_READABLE;
			break;
		}
		ssize_t n = splice_some(x->from->io.fd, x->pipe[1], RELAY_BUF);
		if (n == -EAGAIN) {
			x->wait = PBX_READABLE;
			break;
		}
		if (n == -EINVAL) {
			copy_instead(r, d);
			return;
		}
		if (n < 0) {
			fail(r, (int)n, side_from(d));
			return;
		}
		if (n == 0) {
			input_ended(r, d);
			return;
		}
		x->in_pipe = (uint32_t)n;
		x->writing = true;
		x->from->bytes_in += (uint64_t)n;
	}
	repoll(r);
}

/* An fd a splicing direction waits for is ready (or hung up). */
static void
on_ready(struct pbx_stream *s, unsigned events)
{
	struct pbx_relay *r = s->data;

	for (int d = 0; d < 2 && r->running; d++) {
		const struct pbx_relay_dir *x = &r->dir[d];
		bool in = x->from == s && x->wait == PBX_READABLE &&
			  (events & (PBX_READABLE | PBX_HANGUP));
		bool out = x->to == s && x->wait == PBX_WRITABLE &&
			   (events & (PBX_WRITABLE | PBX_HANGUP));
		if (x->splicing && (in || out))
			splice_on(r, d);
	}
}

static const struct pbx_stream_ops relay_ops = {
    .alloc = on_alloc,
    .read = on_read,
    .shutdown = on_shutdown,
    .ready = on_ready,
};

int
pbx_relay_start(struct pbx_relay *r)
{
	r->dir[A_TO_B] =
	    (struct pbx_relay_dir){.from = r->a_in, .to = r->b_out};
	r->dir[B_TO_A] =
	    (struct pbx_relay_dir){.from = r->b_in, .to = r->a_out};
	r->err = 0;
	r->where = 0;
	for (int d = 0; d < 2; d++) {
		choose_mover(r, d);
		if (!r->dir[d].splicing)
			r->dir[d].buf = malloc(r->dir[d].chunk);
		if (!r->dir[d].splicing && r->dir[d].buf == NULL) {
			free(r->dir[0].buf);
			r->dir[0].buf = NULL;
			close_pipe(&r->dir[0]);
			return -ENOMEM;
		}
	}
	for (int i = 0; i < 4; i++) {
		struct pbx_stream *s = *streams(r, i);
		r->saved_ops[i] = s->ops;
		r->saved_data[i] = s->data;
	}
	for (int i = 0; i < 4; i++) {
		struct pbx_stream *s = *streams(r, i);
		s->ops = &relay_ops;
		s->data = r;
	}
	r->running = true;
	r->starting = true;
	resume(r, A_TO_B);
	resume(r, B_TO_A);
	r->starting = false;
	return r->running ? 0 : r->err;
}

/* ---- the blocking wrapper ---- */

static void
on_relay_done(struct pbx_relay *r)
{
	pbx_loop_stop(r->data);
}

/* Stop watching a borrowed fd without closing it. */
static void
let_go(struct pbx_stream *s)
{
	if (pbx_stream_release_fd(s) < 0)
		pbx_io_stop(s->loop, &s->io);
}

int
pbx_relay(int in_fd, int out_fd, int sock_fd, int flags,
    struct pbx_relay_stats *stats, int *where)
{
	struct pbx_stream in, out, sock;
	struct pbx_loop *loop;
	int e = pbx_set_nonblock(sock_fd, true);

	if (e == 0)
		e = pbx_loop_new(&loop);
	if (e < 0) {
		if (where != NULL)
			*where = 1;
		return e;
	}
	static const struct pbx_stream_ops none; /* the relay lends its own */

	pbx_stream_init(&in, loop, in_fd, NULL, &none);
	pbx_stream_init(&out, loop, out_fd, NULL, &none);
	pbx_stream_init(&sock, loop, sock_fd, NULL, &none);
	struct pbx_relay r = {
	    .a_in = &in,
	    .a_out = in_fd == out_fd ? &in : &out,
	    .b_in = &sock,
	    .b_out = &sock,
	    .flags = (flags & PBX_RELAY_WAIT_LOCAL) ? 0 : PBX_RELAY_END_WITH_B,
	    .cb = on_relay_done,
	    .data = loop,
	};
	e = pbx_relay_start(&r);
	if (e < 0 && r.err == 0) {
		r.err = e;
		r.where = 1;
	} else if (e == 0) {
		e = pbx_loop_run(loop);
		if (r.running) /* nothing left that could move, or epoll failed
				*/
			fail(&r, e, 1);
	}
	let_go(&in);
	let_go(&out);
	let_go(&sock);
	pbx_loop_free(loop);
	for (int d = 0; d < 2; d++)
		free(r.dir[d].buf);
	if (stats != NULL)
		*stats = (struct pbx_relay_stats){
		    .to_socket = r.a_to_b, .from_socket = r.b_to_a};
	if (where != NULL && r.err != 0)
		*where = r.where;
	return r.err;
}
