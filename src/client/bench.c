/* SPDX-License-Identifier: MIT */
/*
 * bench.c: the load generator's engine. Each of the -c slots places one
 * call after another: a non-blocking connect, the request, the reply, the
 * close; all slots share one epoll loop and one read buffer.
 */
#include "bench.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BENCH_BUF 65536
#define RETRY_MS 10 /* after a call that could not even start */

const char *const bench_error_names[BENCH_ERR_COUNT] = {
    [BENCH_ERR_REFUSED] = "refused",
    [BENCH_ERR_RESET] = "reset",
    [BENCH_ERR_TIMEOUT] = "timeout",
    [BENCH_ERR_UNREACHABLE] = "unreachable",
    [BENCH_ERR_ADDRESS] = "address",
    [BENCH_ERR_DESCRIPTORS] = "descriptors",
    [BENCH_ERR_MISMATCH] = "mismatch",
    [BENCH_ERR_SHORT] = "short",
    [BENCH_ERR_OTHER] = "other",
};

enum slot_state {
	SLOT_IDLE,
	SLOT_WAITING, /* a retry timer runs */
	SLOT_DIALING, /* the dialer has the socket, until on_dialed */
	SLOT_CONNECTING,
	SLOT_SENDING,
	SLOT_RECEIVING,
	SLOT_HOLDING,
};

struct bench;

struct slot {
	struct pbx_io io;
	struct pbx_timer timer; /* the call's timeout, or a retry */
	struct pbx_dialer dial; /* places every call of this slot */
	struct bench *b;
	enum slot_state state;
	uint64_t t0_us;    /* when this round began */
	size_t sent;       /* of o->send, this round */
	uint64_t received; /* this round */
	unsigned rounds_done;
	bool mismatch;
};

struct bench {
	const struct bench_opts *o;
	struct bench_stats *st;
	struct pbx_loop *loop;
	struct slot *slots; /* owned, o->conns of them */
	char *buf;          /* owned: every read lands here */
	bool measuring, stopping;
	uint64_t started; /* calls begun */
	unsigned active;  /* slots holding an fd */
	size_t next_source;
	uint64_t begin_us, measure_us;
	struct pbx_timer t_end, t_warm, t_tick;
};

static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static enum bench_error
classify(int err)
{
	switch (err) {
	case -ECONNREFUSED:
		return BENCH_ERR_REFUSED;
	case -ECONNRESET:
	case -EPIPE:
	case -ECONNABORTED:
		return BENCH_ERR_RESET;
	case -ETIMEDOUT:
		return BENCH_ERR_TIMEOUT;
	case -ENETUNREACH:
	case -EHOSTUNREACH:
		return BENCH_ERR_UNREACHABLE;
	case -EADDRNOTAVAIL:
	case -EADDRINUSE:
		return BENCH_ERR_ADDRESS;
	case -EMFILE:
	case -ENFILE:
		return BENCH_ERR_DESCRIPTORS;
	default:
		return BENCH_ERR_OTHER;
	}
}

static void slot_start(struct slot *s);

static void
finish_if_done(struct bench *b)
{
	bool no_more = b->stopping || b->o->hold ||
		       (b->o->total != 0 && b->started >= b->o->total);
	if (no_more && b->active == 0 && !b->stopping) {
		b->stopping = true;
		b->st->seconds = (double)(now_us() - b->measure_us) / 1e6;
		pbx_loop_stop(b->loop);
	}
}

static void
slot_close(struct slot *s, bool reset)
{
	struct bench *b = s->b;

	if (s->state == SLOT_DIALING) {
		pbx_dialer_cancel(&s->dial);
		s->state = SLOT_IDLE;
		b->active--;
		return;
	}
	/* The slot holds the only descriptor: closing it leaves epoll too. */
	pbx_io_forget(b->loop, &s->io);
	pbx_timer_stop(b->loop, &s->timer);

	if (reset)
		pbx_close_reset(s->io.fd);
	else
		close(s->io.fd);
	s->io.fd = -1;
	s->state = SLOT_IDLE;
	b->active--;
}

/* The slot is free: place the next call, or see whether the run is over. */
static void
slot_next(struct slot *s)
{
	struct bench *b = s->b;

	if (!b->stopping && !b->o->hold &&
	    (b->o->total == 0 || b->started < b->o->total)) {
		slot_start(s);
		return;
	}
	finish_if_done(b);
}

static void
slot_fail(struct slot *s, int err, enum bench_error kind)
{
	struct bench *b = s->b;

	(void)err;
	if (b->measuring)
		b->st->errors[kind]++;
	if (s->state == SLOT_HOLDING)
		b->st->dropped++;
	/* A reset leaves no TIME_WAIT behind to eat the port range. */
	slot_close(s, true);
	slot_next(s);
}

static void
call_done(struct slot *s)
{
	struct bench *b = s->b;

	if (b->measuring)
		b->st->calls++;
	slot_close(s, b->o->reset);
	slot_next(s);
}

static void
want(struct slot *s, unsigned events)
{
	int r = pbx_io_start(s->b->loop, &s->io, events);
	if (r < 0)
		slot_fail(s, r, classify(r));
}

static void
begin_receive(struct slot *s)
{
	s->state = SLOT_RECEIVING;
	want(s, PBX_READABLE | PBX_PEER_CLOSED);
}

static void
write_more(struct slot *s)
{
	const struct bench_opts *o = s->b->o;

	while (s->sent < o->send_len) {
		ssize_t n = pbx_write_some(
		    s->io.fd, o->send + s->sent, o->send_len - s->sent);
		if (n == -EAGAIN) {
			want(s, PBX_WRITABLE);
			return;
		}
		if (n < 0) {
			slot_fail(s, (int)n, classify((int)n));
			return;
		}
		s->sent += (size_t)n;
		if (s->b->measuring)
			s->b->st->bytes_out += (uint64_t)n;
	}
	/* Reading to EOF: say we are done so the peer (echo) can finish. */
	if (!o->expect_bytes_set)
		pbx_shutdown_write(s->io.fd);
	begin_receive(s);
}

static void
begin_round(struct slot *s)
{
	s->sent = 0;
	s->received = 0;
	s->mismatch = false;
	if (s->b->o->send_len == 0) {
		begin_receive(s);
		return;
	}
	s->state = SLOT_SENDING;
	write_more(s);
}

static void
round_done(struct slot *s, bool eof)
{
	struct bench *b = s->b;
	const struct bench_opts *o = b->o;
	uint64_t t = now_us();

	if (s->mismatch) {
		slot_fail(s, 0, BENCH_ERR_MISMATCH);
		return;
	}
	if (b->measuring) {
		hist_add(&b->st->latency, t - s->t0_us);
		b->st->rounds++;
	}
	s->rounds_done++;
	if (eof || b->stopping ||
	    (o->rounds != 0 && s->rounds_done >= o->rounds)) {
		call_done(s);
		return;
	}
	s->t0_us = t;
	if (o->timeout_ms > 0)
		pbx_timer_start(b->loop, &s->timer, (uint64_t)o->timeout_ms);
	begin_round(s);
}

static void
check_expect(struct slot *s, const char *data, size_t n)
{
	const struct bench_opts *o = s->b->o;

	if (s->received >= o->expect_len)
		return;
	size_t want_n = o->expect_len - (size_t)s->received;
	size_t cmp = n < want_n ? n : want_n;
	if (memcmp(data, o->expect + s->received, cmp) != 0)
		s->mismatch = true;
}

static void
on_eof(struct slot *s)
{
	const struct bench_opts *o = s->b->o;

	if (o->expect_bytes_set && s->received < o->expect_bytes)
		slot_fail(s, 0, BENCH_ERR_SHORT);
	else if (s->received < o->expect_len)
		slot_fail(s, 0, BENCH_ERR_MISMATCH);
	else
		round_done(s, true);
}

static void
read_more(struct slot *s, unsigned events)
{
	struct bench *b = s->b;
	const struct bench_opts *o = b->o;

	for (;;) {
		ssize_t n = pbx_read_some(s->io.fd, b->buf, BENCH_BUF);
		if (n == -EAGAIN)
			return;
		if (n < 0) {
			slot_fail(s, (int)n, classify((int)n));
			return;
		}
		if (n == 0) {
			on_eof(s);
			return;
		}
		if (o->expect_len > 0)
			check_expect(s, b->buf, (size_t)n);
		s->received += (uint64_t)n;
		if (b->measuring)
			b->st->bytes_in += (uint64_t)n;
		if (o->expect_bytes_set && s->received >= o->expect_bytes) {
			round_done(s, false);
			return;
		}
		/* FIN came with the data: the next read would only say 0. */
		if ((events & PBX_PEER_CLOSED) && (size_t)n < BENCH_BUF) {
			on_eof(s);
			return;
		}
	}
}

static void
hold_read(struct slot *s)
{
	ssize_t n = pbx_read_some(s->io.fd, s->b->buf, BENCH_BUF);

	if (n == -EAGAIN || n > 0)
		return;
	slot_fail(s, (int)n, n == 0 ? BENCH_ERR_SHORT : classify((int)n));
}

static void
on_connected(struct slot *s)
{
	int err = pbx_dial_finish(s->io.fd);

	if (err < 0) {
		slot_fail(s, err, classify(err));
		return;
	}
	if (s->b->o->hold) {
		s->state = SLOT_HOLDING;
		pbx_timer_stop(s->b->loop, &s->timer);
		want(s, PBX_READABLE);
		return;
	}
	begin_round(s);
}

static void
on_io(struct pbx_loop *loop, struct pbx_io *w, unsigned events)
{
	struct slot *s = w->data;

	(void)loop;
	switch (s->state) {
	case SLOT_CONNECTING:
		on_connected(s);
		return;
	case SLOT_SENDING:
		write_more(s);
		return;
	case SLOT_RECEIVING:
		read_more(s, events);
		return;
	case SLOT_HOLDING:
		hold_read(s);
		return;
	case SLOT_IDLE:
	case SLOT_WAITING:
	case SLOT_DIALING:
		return;
	}
}

static void
on_slot_timer(struct pbx_loop *loop, struct pbx_timer *t)
{
	struct slot *s = t->data;

	(void)loop;
	if (s->state == SLOT_WAITING) {
		s->state = SLOT_IDLE;
		slot_next(s);
		return;
	}
	slot_fail(s, -ETIMEDOUT, BENCH_ERR_TIMEOUT);
}

/* An error no retry can mend: the run stops and says why. */
static bool
permanent(int err)
{
	return err == -EINVAL || err == -EACCES || err == -EPERM ||
	       err == -EAFNOSUPPORT || err == -EPROTONOSUPPORT;
}

/*
 * Could not even start: count it and try again shortly, never in a spin.
 * Whatever connect reports at once (out of ports or fds, no route to the
 * network) it would report again at once: each retry waits RETRY_MS.
 */
static void
start_failed(struct slot *s, int err)
{
	struct bench *b = s->b;

	if (permanent(err)) {
		b->st->fatal = err;
		b->stopping = true;
		pbx_loop_stop(b->loop);
		return;
	}
	if (b->measuring)
		b->st->errors[classify(err)]++;
	s->state = SLOT_WAITING;
	pbx_timer_start(b->loop, &s->timer, RETRY_MS);
}

/*
 * The dialer hands the socket over as soon as its connect is under way
 * (PBX_DIALER_EARLY), so a call costs what it did before the dialer:
 * socket, connect, one epoll_ctl. With nothing to send, the reply itself
 * proves the connect worked (a refusal shows up as an error on read);
 * else writability does, and on_connected asks how it went.
 */
static void
on_dialed(struct pbx_dialer *d, int fd)
{
	struct slot *s = d->data;
	struct bench *b = s->b;
	const struct bench_opts *o = b->o;

	s->state = SLOT_IDLE;
	if (fd < 0) {
		b->active--;
		start_failed(s, fd);
		return;
	}
	s->io = (struct pbx_io){.fd = fd, .cb = on_io, .data = s};
	bool reply_only = o->send_len == 0 && !o->hold;
	int r = pbx_io_start(b->loop, &s->io,
	    reply_only ? PBX_READABLE | PBX_PEER_CLOSED : PBX_WRITABLE);
	if (r < 0) {
		close(fd);
		s->io.fd = -1;
		b->active--;
		start_failed(s, r);
		return;
	}
	if (o->timeout_ms > 0)
		pbx_timer_start(b->loop, &s->timer, (uint64_t)o->timeout_ms);
	s->received = 0;
	s->mismatch = false;
	s->state = reply_only ? SLOT_RECEIVING : SLOT_CONNECTING;
}

static void
slot_start(struct slot *s)
{
	struct bench *b = s->b;
	const struct bench_opts *o = b->o;

	b->started++;
	s->dial.source = NULL;
	if (o->nsources > 0)
		s->dial.source = &o->sources[b->next_source++ % o->nsources];
	s->t0_us = now_us();
	s->rounds_done = 0;
	/* Even a failure comes through on_dialed, from the loop: no
	 * recursion when calls fail one after another. */
	int r = pbx_dialer_start(b->loop, &s->dial);
	if (r < 0) {
		start_failed(s, r);
		return;
	}
	b->active++; /* the dialer holds the slot's socket */
	s->state = SLOT_DIALING;
}

static void
start_measuring(struct bench *b)
{
	memset(b->st, 0, sizeof *b->st);
	hist_init(&b->st->latency);
	b->measuring = true;
	b->measure_us = now_us();
}

static void
on_warm(struct pbx_loop *loop, struct pbx_timer *t)
{
	(void)loop;
	start_measuring(t->data);
}

static void
on_tick(struct pbx_loop *loop, struct pbx_timer *t)
{
	struct bench *b = t->data;

	if (b->measuring)
		bench_progress(
		    b->st, (double)(now_us() - b->measure_us) / 1e6, false);
	pbx_timer_start(loop, t, 1000);
}

static void
on_end(struct pbx_loop *loop, struct pbx_timer *t)
{
	struct bench *b = t->data;

	b->st->seconds = (double)(now_us() - b->measure_us) / 1e6;
	b->stopping = true;
	for (unsigned i = 0; i < b->o->conns; i++) {
		struct slot *s = &b->slots[i];
		if (s->state == SLOT_HOLDING)
			b->st->held++;
		else if (s->state != SLOT_IDLE && s->state != SLOT_WAITING)
			b->st->cut_off++;

		if (s->state != SLOT_IDLE && s->state != SLOT_WAITING)
			slot_close(s, true);
		pbx_timer_stop(loop, &s->timer);
	}
	pbx_loop_stop(loop);
}

static void
start_timers(struct bench *b)
{
	const struct bench_opts *o = b->o;

	if (o->warmup_ms > 0) {
		b->t_warm = (struct pbx_timer){.cb = on_warm, .data = b};
		pbx_timer_start(b->loop, &b->t_warm, o->warmup_ms);
	} else {
		start_measuring(b);
	}
	if (o->duration_ms > 0) {
		b->t_end = (struct pbx_timer){.cb = on_end, .data = b};
		pbx_timer_start(
		    b->loop, &b->t_end, o->warmup_ms + o->duration_ms);
	}
	if (o->progress) {
		b->t_tick = (struct pbx_timer){.cb = on_tick, .data = b};
		pbx_timer_start(b->loop, &b->t_tick, 1000);
	}
}

int
bench_run(const struct bench_opts *o, struct bench_stats *st)
{
	struct bench b = {.o = o, .st = st};
	int r = pbx_loop_new(&b.loop);

	if (r < 0)
		return r;
	memset(st, 0, sizeof *st);
	hist_init(&st->latency);
	b.slots = calloc(o->conns, sizeof *b.slots);
	b.buf = malloc(BENCH_BUF);
	if (b.slots == NULL || b.buf == NULL) {
		r = -ENOMEM;
		goto out_free;
	}
	b.begin_us = now_us();
	start_timers(&b);
	for (unsigned i = 0; i < o->conns; i++) {
		struct slot *s = &b.slots[i];
		s->b = &b;
		s->io.fd = -1;
		s->timer = (struct pbx_timer){.cb = on_slot_timer, .data = s};
		s->dial = (struct pbx_dialer){.addrs = &o->target,
		    .naddrs = 1,
		    .flags = PBX_DIALER_EARLY,
		    .cb = on_dialed,
		    .data = s};
		if (o->total == 0 || b.started < o->total)
			slot_start(s);
	}
	r = pbx_loop_run(b.loop);
	if (o->progress)
		bench_progress(st, st->seconds, true);
out_free:
	free(b.slots);
	free(b.buf);
	pbx_loop_free(b.loop);
	return r;
}
