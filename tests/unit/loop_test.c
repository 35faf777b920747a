/* SPDX-License-Identifier: MIT */
/* Unit tests of the loop module: io watchers, timers, signals, children. */
#include "check.h"
#include "pbx.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <time.h>

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
pair(int sv[2])
{
	return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
}

static bool
sig_blocked(int signo)
{
	sigset_t cur;
	sigprocmask(SIG_BLOCK, NULL, &cur);
	return sigismember(&cur, signo) == 1;
}

/* A timer that ends a run that went wrong. */
struct guard {
	struct pbx_timer t;
	bool fired;
};

static void
guard_cb(struct pbx_loop *loop, struct pbx_timer *t)
{
	struct guard *g = (struct guard *)t;
	g->fired = true;
	pbx_loop_stop(loop);
}

static void
guard_start(struct pbx_loop *loop, struct guard *g, uint64_t ms)
{
	memset(g, 0, sizeof *g);
	g->t.cb = guard_cb;
	if (pbx_timer_start(loop, &g->t, ms) != 0)
		CHECK_FAILED("guard timer did not start");
}

/* ---------------------------------------------------------------- */
/* Basics                                                             */
/* ---------------------------------------------------------------- */

static void
test_loop_run_returns_when_idle(void)
{
	struct pbx_loop *loop = NULL;
	REQUIRE(pbx_loop_new(&loop) == 0);
	REQUIRE(loop != NULL);
	int64_t t0 = now_ms();
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK(now_ms() - t0 < 1000);
	pbx_loop_free(loop);
}

/* ---------------------------------------------------------------- */
/* io watchers                                                        */
/* ---------------------------------------------------------------- */

struct io_rec {
	int calls;
	unsigned events[8];
	bool read_it;
	struct pbx_timer *guard; /* stopped by the callback when set */
};

static void
io_once_cb(struct pbx_loop *loop, struct pbx_io *w, unsigned events)
{
	struct io_rec *r = w->data;
	if (r->calls < 8)
		r->events[r->calls] = events;
	r->calls++;
	if (r->read_it) {
		char buf[16];
		if (read(w->fd, buf, sizeof buf) < 0)
			CHECK_FAILED("read in callback: %s", strerror(errno));
	}
	pbx_io_stop(loop, w);
	if (r->guard != NULL)
		pbx_timer_stop(loop, r->guard);
}

static void
test_loop_io_readable(void)
{
	int sv[2];
	REQUIRE(pair(sv) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct io_rec rec = {.read_it = true};
	struct pbx_io w = {.fd = sv[0], .cb = io_once_cb, .data = &rec};
	CHECK_EQ(pbx_io_start(loop, &w, PBX_READABLE), 0);
	CHECK_EQ(w.events, PBX_READABLE);
	/* Nothing to read yet: a short run must not call it. */
	struct guard g;
	guard_start(loop, &g, 50);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK(g.fired);
	CHECK_EQ(rec.calls, 0);

	CHECK_EQ(write(sv[1], "x", 1), 1);
	guard_start(loop, &g, 5000);
	rec.guard = &g.t;
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK(!g.fired);
	CHECK_EQ(rec.calls, 1);
	CHECK((rec.events[0] & PBX_READABLE) != 0);
	CHECK((rec.events[0] & PBX_WRITABLE) == 0);
	CHECK_EQ(w.events, 0);
	pbx_loop_free(loop);
	close(sv[0]);
	close(sv[1]);
}

static void
test_loop_io_writable(void)
{
	int sv[2];
	REQUIRE(pair(sv) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct io_rec rec = {0};
	struct pbx_io w = {.fd = sv[0], .cb = io_once_cb, .data = &rec};
	CHECK_EQ(pbx_io_start(loop, &w, PBX_WRITABLE), 0);
	CHECK_EQ(pbx_loop_run(loop), 0); /* returns once w stops itself */
	CHECK_EQ(rec.calls, 1);
	CHECK((rec.events[0] & PBX_WRITABLE) != 0);
	CHECK((rec.events[0] & PBX_READABLE) == 0);
	pbx_loop_free(loop);
	close(sv[0]);
	close(sv[1]);
}

static void
test_loop_io_change_set(void)
{
	int sv[2];
	REQUIRE(pair(sv) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct io_rec rec = {0};
	struct pbx_io w = {.fd = sv[0], .cb = io_once_cb, .data = &rec};
	CHECK_EQ(pbx_io_start(loop, &w, PBX_READABLE), 0);
	CHECK_EQ(pbx_io_start(loop, &w, PBX_WRITABLE), 0);
	CHECK_EQ(w.events, PBX_WRITABLE);
	struct guard g;
	guard_start(loop, &g, 5000);
	rec.guard = &g.t;
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK(!g.fired);
	CHECK_EQ(rec.calls, 1);
	CHECK_EQ(rec.events[0] & (PBX_READABLE | PBX_WRITABLE), PBX_WRITABLE);

	/* Both, with data waiting. */
	CHECK_EQ(write(sv[1], "x", 1), 1);
	rec = (struct io_rec){.read_it = true};
	CHECK_EQ(pbx_io_start(loop, &w, PBX_READABLE | PBX_WRITABLE), 0);
	CHECK_EQ(w.events, PBX_READABLE | PBX_WRITABLE);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(rec.calls, 1);
	CHECK_EQ(rec.events[0] & (PBX_READABLE | PBX_WRITABLE),
	    PBX_READABLE | PBX_WRITABLE);

	/* Writable dropped: readable only, and nothing to read. */
	rec = (struct io_rec){0};
	CHECK_EQ(pbx_io_start(loop, &w, PBX_READABLE | PBX_WRITABLE), 0);
	CHECK_EQ(pbx_io_start(loop, &w, PBX_READABLE), 0);
	guard_start(loop, &g, 50);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK(g.fired);
	CHECK_EQ(rec.calls, 0);

	/* events == 0 stops: the loop has nothing left and returns. */
	CHECK_EQ(pbx_io_start(loop, &w, 0), 0);
	CHECK_EQ(w.events, 0);
	int64_t t0 = now_ms();
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK(now_ms() - t0 < 1000);
	CHECK_EQ(rec.calls, 0);
	pbx_loop_free(loop);
	close(sv[0]);
	close(sv[1]);
}

static void
test_loop_io_hangup(void)
{
	int sv[2];
	REQUIRE(pair(sv) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct io_rec rec = {0};
	struct pbx_io w = {.fd = sv[0], .cb = io_once_cb, .data = &rec};
	CHECK_EQ(pbx_io_start(loop, &w, PBX_READABLE), 0);
	close(sv[1]);
	struct guard g;
	guard_start(loop, &g, 5000);
	rec.guard = &g.t;
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK(!g.fired);
	CHECK_EQ(rec.calls, 1);
	CHECK((rec.events[0] & (PBX_READABLE | PBX_HANGUP)) != 0);
	char c;
	CHECK_EQ(read(sv[0], &c, 1), 0);
	pbx_loop_free(loop);
	close(sv[0]);
}

/* The callback stops its own watcher and frees its memory (ASan would
 * see the loop touching it afterwards). */
static void
io_free_self_cb(struct pbx_loop *loop, struct pbx_io *w, unsigned events)
{
	(void)events;
	int *calls = w->data;
	(*calls)++;
	pbx_io_stop(loop, w);
	free(w);
}

static void
test_loop_io_stop_and_free_in_own_callback(void)
{
	int sv[2];
	REQUIRE(pair(sv) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	int calls = 0;
	struct pbx_io *w = calloc(1, sizeof *w);
	REQUIRE(w != NULL);
	w->fd = sv[0];
	w->cb = io_free_self_cb;
	w->data = &calls;
	CHECK_EQ(write(sv[1], "x", 1), 1);
	CHECK_EQ(pbx_io_start(loop, w, PBX_READABLE | PBX_WRITABLE), 0);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(calls, 1);
	pbx_loop_free(loop);
	close(sv[0]);
	close(sv[1]);
}

/* Two watchers ready in the same batch; whichever runs first stops and
 * frees the other, which must then not be called. */
struct rival {
	struct pbx_io io;
	struct rival **other; /* slot holding the other, NULL once freed */
	struct rival **self;
	int *calls;
};

static void
rival_cb(struct pbx_loop *loop, struct pbx_io *w, unsigned events)
{
	(void)events;
	struct rival *me = (struct rival *)w;
	(*me->calls)++;
	if (*me->other != NULL) {
		pbx_io_stop(loop, &(*me->other)->io);
		free(*me->other);
		*me->other = NULL;
	}
	pbx_io_stop(loop, w);
	*me->self = NULL;
	free(me);
}

static void
test_loop_io_stop_other_pending(void)
{
	int a[2], b[2];
	REQUIRE(pair(a) == 0);
	REQUIRE(pair(b) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	int calls = 0;
	struct rival *slot[2];
	slot[0] = calloc(1, sizeof(struct rival));
	slot[1] = calloc(1, sizeof(struct rival));
	REQUIRE(slot[0] && slot[1]);
	*slot[0] = (struct rival){
	    {.fd = a[0], .cb = rival_cb}, &slot[1], &slot[0], &calls};
	*slot[1] = (struct rival){
	    {.fd = b[0], .cb = rival_cb}, &slot[0], &slot[1], &calls};
	CHECK_EQ(write(a[1], "x", 1), 1);
	CHECK_EQ(write(b[1], "x", 1), 1);
	CHECK_EQ(pbx_io_start(loop, &slot[0]->io, PBX_READABLE), 0);
	CHECK_EQ(pbx_io_start(loop, &slot[1]->io, PBX_READABLE), 0);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(calls, 1);
	CHECK(slot[0] == NULL && slot[1] == NULL);
	pbx_loop_free(loop);
	close(a[0]);
	close(a[1]);
	close(b[0]);
	close(b[1]);
}

/* Stopping a pending watcher, then starting it again on another fd in the
 * same callback: the stale event of the old fd must not be delivered. */
struct swap {
	struct pbx_io w[2];
	int fresh_fd;
	int calls[2];
	unsigned first_events;
};

static void swap_cb(struct pbx_loop *loop, struct pbx_io *w, unsigned ev);

static void
swap_cb(struct pbx_loop *loop, struct pbx_io *w, unsigned ev)
{
	struct swap *s = w->data;
	int me = w == &s->w[0] ? 0 : 1;
	s->calls[me]++;
	if (s->calls[0] + s->calls[1] == 1) {
		s->first_events = ev;
		struct pbx_io *o = &s->w[1 - me];
		pbx_io_stop(loop, o);
		o->fd = s->fresh_fd; /* nothing to read there */
		if (pbx_io_start(loop, o, PBX_READABLE) != 0)
			CHECK_FAILED("restart failed");
	}
	pbx_io_stop(loop, w);
}

static void
test_loop_io_restart_other_pending(void)
{
	int a[2], b[2], c[2];
	REQUIRE(pair(a) == 0);
	REQUIRE(pair(b) == 0);
	REQUIRE(pair(c) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct swap s = {0};
	s.fresh_fd = c[0];
	s.w[0] = (struct pbx_io){.fd = a[0], .cb = swap_cb, .data = &s};
	s.w[1] = (struct pbx_io){.fd = b[0], .cb = swap_cb, .data = &s};
	CHECK_EQ(write(a[1], "x", 1), 1);
	CHECK_EQ(write(b[1], "x", 1), 1);
	CHECK_EQ(pbx_io_start(loop, &s.w[0], PBX_READABLE), 0);
	CHECK_EQ(pbx_io_start(loop, &s.w[1], PBX_READABLE), 0);
	struct guard g;
	guard_start(loop, &g, 100);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(s.calls[0] + s.calls[1], 1);
	CHECK(g.fired);
	pbx_io_stop(loop, &s.w[0]);
	pbx_io_stop(loop, &s.w[1]);
	pbx_loop_free(loop);
	int fds[] = {a[0], a[1], b[0], b[1], c[0], c[1]};
	for (size_t i = 0; i < 6; i++)
		close(fds[i]);
}

struct starter {
	struct pbx_io first, second;
	int second_calls;
};

static void
starter_second_cb(struct pbx_loop *loop, struct pbx_io *w, unsigned ev)
{
	(void)ev;
	struct starter *s = w->data;
	s->second_calls++;
	pbx_io_stop(loop, w);
	pbx_loop_stop(loop);
}

static void
starter_first_cb(struct pbx_loop *loop, struct pbx_io *w, unsigned ev)
{
	(void)ev;
	struct starter *s = w->data;
	pbx_io_stop(loop, w);
	if (pbx_io_start(loop, &s->second, PBX_WRITABLE) != 0)
		CHECK_FAILED("start from a callback failed");
}

static void
test_loop_io_start_from_callback(void)
{
	int sv[2];
	REQUIRE(pair(sv) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct starter s = {0};
	s.first =
	    (struct pbx_io){.fd = sv[0], .cb = starter_first_cb, .data = &s};
	s.second =
	    (struct pbx_io){.fd = sv[1], .cb = starter_second_cb, .data = &s};
	CHECK_EQ(pbx_io_start(loop, &s.first, PBX_WRITABLE), 0);
	struct guard g;
	guard_start(loop, &g, 5000);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK(!g.fired);
	CHECK_EQ(s.second_calls, 1);
	pbx_timer_stop(loop, &g.t);
	pbx_loop_free(loop);
	close(sv[0]);
	close(sv[1]);
}

/* ---------------------------------------------------------------- */
/* Timers                                                             */
/* ---------------------------------------------------------------- */

struct order_rec {
	int fired[100];
	int64_t at[100];
	int n;
};

struct tmr {
	struct pbx_timer t;
	int idx;
	uint64_t delay;
	struct order_rec *rec;
};

static void
tmr_order_cb(struct pbx_loop *loop, struct pbx_timer *t)
{
	struct tmr *m = (struct tmr *)t;
	if (pbx_loop_now(loop) < t->due_ms)
		CHECK_FAILED("timer %d ran at %" PRIu64 " before due %" PRIu64,
		    m->idx, pbx_loop_now(loop), t->due_ms);
	if (m->rec->n < 100) {
		m->rec->fired[m->rec->n] = m->idx;
		m->rec->at[m->rec->n] = now_ms();
	}
	m->rec->n++;
}

static void
test_loop_timers_fire_in_deadline_order(void)
{
	int64_t t0 = now_ms();
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	static struct tmr tm[100];
	struct order_rec rec = {0};
	unsigned seed = 12345;
	for (int i = 0; i < 100; i++) {
		seed = seed * 1103515245u + 12345u;
		tm[i] = (struct tmr){.t.cb = tmr_order_cb,
		    .idx = i,
		    .delay = (seed >> 16) % 300,
		    .rec = &rec};
		CHECK_EQ(pbx_timer_start(loop, &tm[i].t, tm[i].delay), 0);
	}
	CHECK_EQ(pbx_loop_run(loop), 0);
	REQUIRE(rec.n == 100);
	bool seen[100] = {false};
	for (int k = 0; k < 100; k++) {
		const struct tmr *m = &tm[rec.fired[k]];
		if (seen[m->idx])
			CHECK_FAILED("timer %d fired twice", m->idx);
		seen[m->idx] = true;
		/* 5 ms of slack for a millisecond (or coarse) clock. */
		if (rec.at[k] - t0 + 5 < (int64_t)m->delay)
			CHECK_FAILED("timer %d (%" PRIu64 " ms) fired after "
				     "%" PRId64 " ms",
			    m->idx, m->delay, rec.at[k] - t0);
		if (k == 0)
			continue;
		const struct tmr *p = &tm[rec.fired[k - 1]];
		if (m->t.due_ms < p->t.due_ms)
			CHECK_FAILED("timer %d (due %" PRIu64 ") fired after "
				     "timer %d (due %" PRIu64 ")",
			    m->idx, m->t.due_ms, p->idx, p->t.due_ms);
	}
	pbx_loop_free(loop);
}

struct count_timer {
	struct pbx_timer t;
	int calls;
	int64_t at;
};

static void
count_cb(struct pbx_loop *loop, struct pbx_timer *t)
{
	(void)loop;
	struct count_timer *c = (struct count_timer *)t;
	c->calls++;
	c->at = now_ms();
}

static void
test_loop_timer_restart(void)
{
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct count_timer c = {.t.cb = count_cb};

	/* Restarted sooner. */
	int64_t t0 = now_ms();
	CHECK_EQ(pbx_timer_start(loop, &c.t, 3000), 0);
	CHECK_EQ(pbx_timer_start(loop, &c.t, 20), 0);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(c.calls, 1);
	CHECK(c.at - t0 >= 15);
	CHECK(c.at - t0 < 1500);

	/* Restarted later. */
	c.calls = 0;
	t0 = now_ms();
	CHECK_EQ(pbx_timer_start(loop, &c.t, 10), 0);
	CHECK_EQ(pbx_timer_start(loop, &c.t, 150), 0);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(c.calls, 1);
	CHECK(c.at - t0 >= 145);

	/* Restarted many times among other timers. */
	struct count_timer others[10];
	for (int i = 0; i < 10; i++) {
		others[i] = (struct count_timer){.t.cb = count_cb};
		CHECK_EQ(
		    pbx_timer_start(loop, &others[i].t, (uint64_t)i * 3), 0);
	}
	c.calls = 0;
	for (int i = 0; i < 20; i++)
		CHECK_EQ(
		    pbx_timer_start(loop, &c.t, (uint64_t)(i * 7) % 40), 0);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(c.calls, 1);
	for (int i = 0; i < 10; i++)
		CHECK_EQ(others[i].calls, 1);
	pbx_loop_free(loop);
}

static void
test_loop_timer_stop(void)
{
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct count_timer a = {.t.cb = count_cb}, b = {.t.cb = count_cb};
	CHECK_EQ(pbx_timer_start(loop, &a.t, 20), 0);
	CHECK_EQ(pbx_timer_start(loop, &b.t, 60), 0);
	pbx_timer_stop(loop, &a.t);
	pbx_timer_stop(loop, &a.t); /* stopping twice is harmless */
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(a.calls, 0);
	CHECK_EQ(b.calls, 1);

	/* Stopping the only timer: run returns at once. */
	CHECK_EQ(pbx_timer_start(loop, &a.t, 2000), 0);
	pbx_timer_stop(loop, &a.t);
	int64_t t0 = now_ms();
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK(now_ms() - t0 < 1000);
	CHECK_EQ(a.calls, 0);

	/* A stopped timer restarts normally. */
	CHECK_EQ(pbx_timer_start(loop, &a.t, 5), 0);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(a.calls, 1);
	pbx_loop_free(loop);
}

/* The first timer to fire stops a set of others. */
struct killer {
	struct pbx_timer t;
	struct killer *all;
	int n;
	int idx;
	int calls;
	bool victim;
};

static void
killer_cb(struct pbx_loop *loop, struct pbx_timer *t)
{
	struct killer *k = (struct killer *)t;
	k->calls++;
	if (k->victim)
		CHECK_FAILED("stopped timer %d was called", k->idx);
	if (k->idx != 0)
		return;
	for (int i = 0; i < k->n; i++)
		if (k->all[i].victim)
			pbx_timer_stop(loop, &k->all[i].t);
}

static void
test_loop_timer_stops_another(void)
{
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	static struct killer k[50];
	for (int i = 0; i < 50; i++) {
		k[i] = (struct killer){.t.cb = killer_cb,
		    .all = k,
		    .n = 50,
		    .idx = i,
		    .victim = i % 3 == 1};
		/* Timer 0 first; victims due soon after it and later. */
		uint64_t ms = i == 0 ? 5 : (uint64_t)(i % 2 ? 10 : 10 + i);
		CHECK_EQ(pbx_timer_start(loop, &k[i].t, ms), 0);
	}
	CHECK_EQ(pbx_loop_run(loop), 0);
	for (int i = 0; i < 50; i++)
		CHECK_EQ(k[i].calls, k[i].victim ? 0 : 1);
	pbx_loop_free(loop);
}

/* Two timers due together, each stopping the other: one call in all. */
struct pair_timer {
	struct pbx_timer t;
	struct pair_timer *other;
	int *calls;
};

static void
pair_timer_cb(struct pbx_loop *loop, struct pbx_timer *t)
{
	struct pair_timer *p = (struct pair_timer *)t;
	(*p->calls)++;
	pbx_timer_stop(loop, &p->other->t);
}

static void
test_loop_timer_stops_another_same_deadline(void)
{
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	int calls = 0;
	struct pair_timer a, b;
	a = (struct pair_timer){
	    .t.cb = pair_timer_cb, .other = &b, .calls = &calls};
	b = (struct pair_timer){
	    .t.cb = pair_timer_cb, .other = &a, .calls = &calls};
	CHECK_EQ(pbx_timer_start(loop, &a.t, 20), 0);
	CHECK_EQ(pbx_timer_start(loop, &b.t, 20), 0);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(calls, 1);
	pbx_loop_free(loop);
}

/* A periodic timer (restarting itself) stops the loop every third call. */
struct ticker {
	struct pbx_timer t;
	int calls;
	uint64_t last_now;
};

static void
ticker_cb(struct pbx_loop *loop, struct pbx_timer *t)
{
	struct ticker *k = (struct ticker *)t;
	k->calls++;
	uint64_t now = pbx_loop_now(loop);
	if (now < k->last_now)
		CHECK_FAILED("pbx_loop_now went backwards");
	k->last_now = now;
	if (pbx_timer_start(loop, t, 5) != 0)
		CHECK_FAILED("restart in own callback failed");
	if (k->calls % 3 == 0)
		pbx_loop_stop(loop);
}

static void
test_loop_stop(void)
{
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct ticker k = {.t.cb = ticker_cb};
	int64_t t0 = now_ms();
	CHECK_EQ(pbx_timer_start(loop, &k.t, 5), 0);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(k.calls, 3);
	CHECK_EQ(pbx_loop_run(loop), 0); /* runs again after a stop */
	CHECK_EQ(k.calls, 6);
	CHECK(now_ms() - t0 >= 25);
	pbx_timer_stop(loop, &k.t);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(k.calls, 6);
	pbx_loop_free(loop);
}

/* ---------------------------------------------------------------- */
/* Signals                                                            */
/* ---------------------------------------------------------------- */

struct sig_rec {
	struct pbx_signal s;
	int calls;
	int signo_seen;
	struct pbx_timer *guard;
	bool stop_self;
};

static void
sig_cb(struct pbx_loop *loop, struct pbx_signal *s)
{
	struct sig_rec *r = (struct sig_rec *)s;
	r->calls++;
	r->signo_seen = s->signo;
	if (r->stop_self)
		pbx_signal_stop(loop, s);
	if (r->guard != NULL)
		pbx_timer_stop(loop, r->guard);
}

static void
test_loop_signal(void)
{
	CHECK(!sig_blocked(SIGUSR1));
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct guard g;
	guard_start(loop, &g, 5000);
	struct sig_rec r = {.s = {.signo = SIGUSR1, .cb = sig_cb},
	    .guard = &g.t,
	    .stop_self = true};
	CHECK_EQ(pbx_signal_start(loop, &r.s), 0);
	CHECK(sig_blocked(SIGUSR1));
	CHECK_EQ(raise(SIGUSR1), 0); /* blocked: pending, not fatal */
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK(!g.fired);
	CHECK_EQ(r.calls, 1);
	CHECK_EQ(r.signo_seen, SIGUSR1);
	CHECK(!sig_blocked(SIGUSR1)); /* no watcher left */
	pbx_loop_free(loop);
}

static void
raise_usr2(struct pbx_loop *loop, struct pbx_timer *t)
{
	(void)loop;
	(void)t;
	raise(SIGUSR2);
}

/*
 * A signal watcher keeps the loop running on its own (as a server's
 * SIGTERM watcher must): the timer that raises the signal is gone by the
 * time the signal is read, so only the watcher keeps run alive to see it.
 */
static void
test_loop_signal_keeps_running(void)
{
	alarm(3); /* a run that never returns fails here, not in 20 s */
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct sig_rec r = {
	    .s = {.signo = SIGUSR2, .cb = sig_cb}, .stop_self = true};
	struct pbx_timer t = {.cb = raise_usr2};
	CHECK_EQ(pbx_signal_start(loop, &r.s), 0);
	CHECK_EQ(pbx_timer_start(loop, &t, 50), 0);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(r.calls, 1);
	CHECK_EQ(r.signo_seen, SIGUSR2);
	CHECK(!sig_blocked(SIGUSR2));
	pbx_loop_free(loop);
}

static void
test_loop_signal_two_watchers(void)
{
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct sig_rec r1 = {.s = {.signo = SIGUSR1, .cb = sig_cb}};
	struct sig_rec r2 = {.s = {.signo = SIGUSR2, .cb = sig_cb}};
	CHECK_EQ(pbx_signal_start(loop, &r1.s), 0);
	CHECK_EQ(pbx_signal_start(loop, &r2.s), 0);
	CHECK(sig_blocked(SIGUSR1));
	CHECK(sig_blocked(SIGUSR2));
	CHECK_EQ(raise(SIGUSR1), 0);
	CHECK_EQ(raise(SIGUSR2), 0);
	struct guard g;
	guard_start(loop, &g, 200);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(r1.calls, 1);
	CHECK_EQ(r2.calls, 1);
	CHECK_EQ(r1.signo_seen, SIGUSR1);
	CHECK_EQ(r2.signo_seen, SIGUSR2);
	pbx_signal_stop(loop, &r2.s);
	CHECK(sig_blocked(SIGUSR1));
	CHECK(!sig_blocked(SIGUSR2));
	pbx_signal_stop(loop, &r1.s);
	CHECK(!sig_blocked(SIGUSR1));
	pbx_loop_free(loop);
}

/* Two watchers of one signal; whichever runs first stops and frees the
 * other, which must then not be called (nor touched: ASan). */
struct sig_rival {
	struct pbx_signal s;
	struct sig_rival **other, **self;
	int *calls;
};

static void
sig_rival_cb(struct pbx_loop *loop, struct pbx_signal *s)
{
	struct sig_rival *me = (struct sig_rival *)s;
	(*me->calls)++;
	if (*me->other != NULL) {
		pbx_signal_stop(loop, &(*me->other)->s);
		free(*me->other);
		*me->other = NULL;
	}
	pbx_signal_stop(loop, s);
	*me->self = NULL;
	free(me);
}

static void
test_loop_signal_stop_other_in_callback(void)
{
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	int calls = 0;
	struct sig_rival *slot[2];
	slot[0] = calloc(1, sizeof(struct sig_rival));
	slot[1] = calloc(1, sizeof(struct sig_rival));
	REQUIRE(slot[0] && slot[1]);
	*slot[0] = (struct sig_rival){
	    {.signo = SIGUSR1, .cb = sig_rival_cb}, &slot[1], &slot[0], &calls};
	*slot[1] = (struct sig_rival){
	    {.signo = SIGUSR1, .cb = sig_rival_cb}, &slot[0], &slot[1], &calls};
	CHECK_EQ(pbx_signal_start(loop, &slot[0]->s), 0);
	CHECK_EQ(pbx_signal_start(loop, &slot[1]->s), 0);
	CHECK_EQ(raise(SIGUSR1), 0);
	struct guard g;
	guard_start(loop, &g, 200);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(calls, 1);
	CHECK(slot[0] == NULL && slot[1] == NULL);
	CHECK(!sig_blocked(SIGUSR1));
	pbx_loop_free(loop);
}

/* ---------------------------------------------------------------- */
/* Children                                                           */
/* ---------------------------------------------------------------- */

struct child_rec {
	struct pbx_child c;
	int calls;
	int wstatus;
};

static void
child_cb(struct pbx_loop *loop, struct pbx_child *c, int wstatus)
{
	(void)loop;
	struct child_rec *r = (struct child_rec *)c;
	r->calls++;
	r->wstatus = wstatus;
}

static pid_t
fork_exit(int code, int delay_ms)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		if (delay_ms > 0) {
			struct timespec ts = {0, (long)delay_ms * 1000000L};
			nanosleep(&ts, NULL);
		}
		_exit(code);
	}
	return pid;
}

static void
test_loop_child_exit_status(void)
{
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	pid_t pid = fork_exit(7, 30);
	REQUIRE(pid > 0);
	struct child_rec r = {.c = {.pid = pid, .cb = child_cb}};
	CHECK_EQ(pbx_child_start(loop, &r.c), 0);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(r.calls, 1);
	CHECK(WIFEXITED(r.wstatus));
	CHECK_EQ(WEXITSTATUS(r.wstatus), 7);
	/* Already reaped by the loop. */
	int st;
	errno = 0;
	CHECK_EQ(waitpid(pid, &st, WNOHANG), -1);
	CHECK_EQ(errno, ECHILD);
	pbx_loop_free(loop);
}

static void
test_loop_child_already_exited(void)
{
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	pid_t pid = fork_exit(3, 0);
	REQUIRE(pid > 0);
	/* Let it become a zombie before we watch it. */
	siginfo_t si;
	memset(&si, 0, sizeof si);
	CHECK_EQ(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
	struct child_rec r = {.c = {.pid = pid, .cb = child_cb}};
	CHECK_EQ(pbx_child_start(loop, &r.c), 0);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(r.calls, 1);
	CHECK(WIFEXITED(r.wstatus));
	CHECK_EQ(WEXITSTATUS(r.wstatus), 3);
	pbx_loop_free(loop);
}

static void
test_loop_child_killed(void)
{
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	fflush(NULL);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		alarm(10);
		for (;;)
			pause();
	}
	struct child_rec r = {.c = {.pid = pid, .cb = child_cb}};
	CHECK_EQ(pbx_child_start(loop, &r.c), 0);
	CHECK_EQ(kill(pid, SIGKILL), 0);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(r.calls, 1);
	CHECK(WIFSIGNALED(r.wstatus));
	CHECK_EQ(WTERMSIG(r.wstatus), SIGKILL);
	pbx_loop_free(loop);
}

static void
test_loop_child_stop_leaves_unreaped(void)
{
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	pid_t pid = fork_exit(5, 20);
	REQUIRE(pid > 0);
	struct child_rec r = {.c = {.pid = pid, .cb = child_cb}};
	CHECK_EQ(pbx_child_start(loop, &r.c), 0);
	pbx_child_stop(loop, &r.c);
	int64_t t0 = now_ms();
	CHECK_EQ(pbx_loop_run(loop), 0); /* nothing watched */
	CHECK(now_ms() - t0 < 1000);
	CHECK_EQ(r.calls, 0);
	int st = 0;
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	CHECK(WIFEXITED(st));
	CHECK_EQ(WEXITSTATUS(st), 5);
	pbx_loop_free(loop);
}

static void
test_loop_children_several(void)
{
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct child_rec r[5];
	for (int i = 0; i < 5; i++) {
		pid_t pid = fork_exit(10 + i, 10 * (5 - i));
		REQUIRE(pid > 0);
		r[i] = (struct child_rec){.c = {.pid = pid, .cb = child_cb}};
		CHECK_EQ(pbx_child_start(loop, &r[i].c), 0);
	}
	CHECK_EQ(pbx_loop_run(loop), 0);
	for (int i = 0; i < 5; i++) {
		CHECK_EQ(r[i].calls, 1);
		CHECK(WIFEXITED(r[i].wstatus));
		CHECK_EQ(WEXITSTATUS(r[i].wstatus), 10 + i);
	}
	pbx_loop_free(loop);
}

/* ---------------------------------------------------------------- */
/* Freeing                                                            */
/* ---------------------------------------------------------------- */

/* Freeing with watchers still started: no crash, no leak (LSan), no fd
 * left (the harness counts them). */
static void
test_loop_free_with_watchers(void)
{
	int sv[2];
	REQUIRE(pair(sv) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct io_rec rec = {0};
	struct pbx_io w = {.fd = sv[0], .cb = io_once_cb, .data = &rec};
	CHECK_EQ(pbx_io_start(loop, &w, PBX_READABLE), 0);
	struct count_timer t[20];
	for (int i = 0; i < 20; i++) {
		t[i] = (struct count_timer){.t.cb = count_cb};
		CHECK_EQ(pbx_timer_start(loop, &t[i].t, 1000 + (uint64_t)i), 0);
	}
	pbx_loop_free(loop);
	close(sv[0]);
	close(sv[1]);
}

/* A forked child freeing its copy must not disturb the parent's loop
 * (the epoll instance is shared across fork). */
static void
test_loop_free_in_forked_child(void)
{
	int sv[2];
	REQUIRE(pair(sv) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct io_rec rec = {.read_it = true};
	struct pbx_io w = {.fd = sv[0], .cb = io_once_cb, .data = &rec};
	CHECK_EQ(pbx_io_start(loop, &w, PBX_READABLE), 0);
	fflush(NULL);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		pbx_loop_free(loop);
		_exit(0);
	}
	int st = 0;
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK_EQ(write(sv[1], "x", 1), 1);
	struct guard g;
	guard_start(loop, &g, 2000);
	rec.guard = &g.t;
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK(!g.fired);
	CHECK_EQ(rec.calls, 1);
	pbx_loop_free(loop);
	close(sv[0]);
	close(sv[1]);
}

static void
count_stop_cb(struct pbx_loop *loop, struct pbx_io *w, unsigned events)
{
	(void)events;
	(*(int *)w->data)++;
	pbx_io_stop(loop, w);
}

/* Forget, close, and the fd number comes back: no stale registration. */
static void
test_loop_io_forget_then_reuse_fd(void)
{
	struct pbx_loop *loop;
	int a[2], b[2], calls_a = 0, calls_b = 0;

	REQUIRE(pbx_loop_new(&loop) == 0);
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a) == 0);
	struct pbx_io wa = {.fd = a[0], .cb = count_stop_cb, .data = &calls_a};
	CHECK_EQ(pbx_io_start(loop, &wa, PBX_READABLE), 0);
	pbx_io_forget(loop, &wa);
	CHECK_EQ(wa.events, 0);
	int old = a[0];
	close(a[0]);
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b) == 0);
	int reused = b[0] == old ? b[0] : b[1];
	CHECK_EQ(reused, old);
	struct pbx_io wb = {
	    .fd = reused, .cb = count_stop_cb, .data = &calls_b};
	CHECK_EQ(pbx_io_start(loop, &wb, PBX_READABLE), 0);
	int peer = reused == b[0] ? b[1] : b[0];
	CHECK_EQ(write(peer, "x", 1), 1);

	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(calls_a, 0);
	CHECK_EQ(calls_b, 1);
	close(a[1]);
	close(b[0]);
	close(b[1]);
	pbx_loop_free(loop);
}

struct spin {
	struct pbx_timer self, end;
	int runs;
};

static void
restart_self(struct pbx_loop *loop, struct pbx_timer *t)
{
	struct spin *s = t->data;
	s->runs++;
	pbx_timer_start(loop, t, 0);
}

static void
end_spin(struct pbx_loop *loop, struct pbx_timer *t)
{
	struct spin *s = t->data;
	pbx_timer_stop(loop, &s->self);
	pbx_loop_stop(loop);
}

/* A 0 ms timer that restarts itself lets later timers (and fds) run. */
static void
test_loop_timer_zero_restart_no_starvation(void)
{
	alarm(3);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct spin s = {.self = {.cb = restart_self, .data = &s},
	    .end = {.cb = end_spin, .data = &s}};
	CHECK_EQ(pbx_timer_start(loop, &s.self, 0), 0);
	CHECK_EQ(pbx_timer_start(loop, &s.end, 30), 0);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK(s.runs > 1);
	pbx_loop_free(loop);
}

/* ---------------------------------------------------------------- */
/* Fed events (pbx_io_feed); a stop before the run                    */
/* ---------------------------------------------------------------- */

struct fed_rec {
	struct pbx_io io;
	int calls;
	unsigned events[8];
	int64_t at;     /* when it was last called */
	int refeed;     /* feeds itself again this many more times */
	bool stop_loop; /* the callback stops the loop */
	int stop_after; /* ... once it has been called this often */
};

static void
fed_cb(struct pbx_loop *loop, struct pbx_io *w, unsigned events)
{
	struct fed_rec *f = (struct fed_rec *)w;
	if (f->calls < 8)
		f->events[f->calls] = events;
	f->calls++;
	f->at = now_ms();
	if (f->refeed > 0) {
		f->refeed--;
		if (pbx_io_feed(loop, w, events) != 0)
			CHECK_FAILED("feed from the callback failed");
	}
	if (f->stop_loop || (f->stop_after > 0 && f->calls >= f->stop_after))
		pbx_loop_stop(loop);
}

static void
test_loop_feed_unstarted_watcher(void)
{
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct fed_rec f = {.io = {.fd = -1, .cb = fed_cb}};
	CHECK_EQ(pbx_io_feed(loop, &f.io, PBX_READABLE | PBX_HANGUP), 0);
	CHECK_EQ(f.calls, 0); /* not inside the call */
	CHECK_EQ(f.io.events, 0);
	int64_t t0 = now_ms();
	CHECK_EQ(pbx_loop_run(loop), 0); /* delivers, then has nothing */
	CHECK(now_ms() - t0 < 1000);
	CHECK_EQ(f.calls, 1);
	CHECK_EQ(f.events[0], PBX_READABLE | PBX_HANGUP);
	CHECK_EQ(f.io.events, 0); /* feeding does not start it */

	/* Each call queues one delivery, in order. */
	CHECK_EQ(pbx_io_feed(loop, &f.io, PBX_READABLE), 0);
	CHECK_EQ(pbx_io_feed(loop, &f.io, PBX_WRITABLE), 0);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(f.calls, 3);
	CHECK_EQ(f.events[1], PBX_READABLE);
	CHECK_EQ(f.events[2], PBX_WRITABLE);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(f.calls, 3);
	pbx_loop_free(loop);
}

struct feeding_timer {
	struct pbx_timer t;
	struct pbx_io *w;
	unsigned events;
	int64_t at;
};

static void
feeding_timer_cb(struct pbx_loop *loop, struct pbx_timer *t)
{
	struct feeding_timer *ft = (struct feeding_timer *)t;
	ft->at = now_ms();
	if (pbx_io_feed(loop, ft->w, ft->events) != 0)
		CHECK_FAILED("feed from a timer failed");
}

/* Delivered before the loop waits: a wait first would last until the
 * guard, as the fd has nothing to say. */
static void
test_loop_feed_before_wait(void)
{
	int sv[2];
	REQUIRE(pair(sv) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct fed_rec f = {
	    .io = {.fd = sv[0], .cb = fed_cb}, .stop_loop = true};
	CHECK_EQ(pbx_io_start(loop, &f.io, PBX_READABLE), 0);
	CHECK_EQ(pbx_io_feed(loop, &f.io, PBX_WRITABLE), 0);
	struct guard g;
	guard_start(loop, &g, 3000);
	int64_t t0 = now_ms();
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK(!g.fired);
	CHECK_EQ(f.calls, 1);
	CHECK_EQ(f.events[0], PBX_WRITABLE); /* as given, not the fd's */
	CHECK(f.at - t0 < 500);

	/* Fed from a timer's callback: before the loop waits again. */
	struct feeding_timer ft = {
	    .t.cb = feeding_timer_cb, .w = &f.io, .events = PBX_READABLE};
	CHECK_EQ(pbx_timer_start(loop, &ft.t, 20), 0);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK(!g.fired);
	CHECK_EQ(f.calls, 2);
	CHECK_EQ(f.events[1], PBX_READABLE); /* though nothing is readable */
	CHECK(f.at - ft.at < 500);

	/* Fed from a fed callback: after a look at the fds, not a wait. */
	f.stop_loop = false;
	f.stop_after = 4;
	f.refeed = 1;
	CHECK_EQ(pbx_io_feed(loop, &f.io, PBX_WRITABLE), 0);
	t0 = now_ms();
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK(!g.fired);
	CHECK_EQ(f.calls, 4);
	CHECK(f.at - t0 < 500);
	pbx_timer_stop(loop, &g.t);
	pbx_io_stop(loop, &f.io);
	pbx_loop_free(loop);
	close(sv[0]);
	close(sv[1]);
}

static void
test_loop_feed_dropped_by_stop_and_forget(void)
{
	int sv[2];
	REQUIRE(pair(sv) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	/* Fed, then stopped (it was never started). */
	struct fed_rec a = {.io = {.fd = -1, .cb = fed_cb}};
	CHECK_EQ(pbx_io_feed(loop, &a.io, PBX_READABLE), 0);
	pbx_io_stop(loop, &a.io);
	/* Started, fed, forgotten, its fd closed. */
	struct fed_rec b = {.io = {.fd = sv[0], .cb = fed_cb}};
	CHECK_EQ(pbx_io_start(loop, &b.io, PBX_READABLE), 0);
	CHECK_EQ(pbx_io_feed(loop, &b.io, PBX_READABLE), 0);
	pbx_io_forget(loop, &b.io);
	close(sv[0]);
	/* Fed, stopped, fed again: one call. */
	struct fed_rec e = {.io = {.fd = -1, .cb = fed_cb}};
	CHECK_EQ(pbx_io_feed(loop, &e.io, PBX_READABLE), 0);
	pbx_io_stop(loop, &e.io);
	CHECK_EQ(pbx_io_feed(loop, &e.io, PBX_WRITABLE), 0);
	/* Two fed together; whichever runs first stops and frees the
	 * other (ASan sees the loop touch it). */
	int calls = 0;
	struct rival *slot[2];
	slot[0] = calloc(1, sizeof(struct rival));
	slot[1] = calloc(1, sizeof(struct rival));
	REQUIRE(slot[0] && slot[1]);
	*slot[0] = (struct rival){
	    {.fd = -1, .cb = rival_cb}, &slot[1], &slot[0], &calls};
	*slot[1] = (struct rival){
	    {.fd = -1, .cb = rival_cb}, &slot[0], &slot[1], &calls};
	CHECK_EQ(pbx_io_feed(loop, &slot[0]->io, PBX_READABLE), 0);
	CHECK_EQ(pbx_io_feed(loop, &slot[1]->io, PBX_READABLE), 0);

	struct guard g;
	guard_start(loop, &g, 200);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(a.calls, 0);
	CHECK_EQ(b.calls, 0);
	CHECK_EQ(e.calls, 1);
	CHECK_EQ(e.events[0], PBX_WRITABLE);
	CHECK_EQ(calls, 1);
	CHECK(slot[0] == NULL && slot[1] == NULL);
	pbx_timer_stop(loop, &g.t);
	pbx_loop_free(loop);
	close(sv[1]);
}

/* Nothing started, no timer: run still delivers what is fed, including
 * what the deliveries feed, before it returns. */
static void
test_loop_run_delivers_fed_before_returning(void)
{
	alarm(3);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct fed_rec f = {.io = {.fd = -1, .cb = fed_cb}, .refeed = 4};
	CHECK_EQ(pbx_io_feed(loop, &f.io, PBX_READABLE), 0);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(f.calls, 5);

	/* Fed by the last timer: the loop has nothing else, yet delivers. */
	struct fed_rec f2 = {.io = {.fd = -1, .cb = fed_cb}};
	struct feeding_timer ft = {
	    .t.cb = feeding_timer_cb, .w = &f2.io, .events = PBX_WRITABLE};
	CHECK_EQ(pbx_timer_start(loop, &ft.t, 10), 0);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(f2.calls, 1);
	CHECK_EQ(f2.events[0], PBX_WRITABLE);
	pbx_loop_free(loop);
}

/* A stop in a fed callback returns after it; what is still fed waits for
 * the next run. */
static void
test_loop_feed_kept_across_stop(void)
{
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct fed_rec a = {.io = {.fd = -1, .cb = fed_cb}, .stop_loop = true};
	struct fed_rec b = {.io = {.fd = -1, .cb = fed_cb}};
	CHECK_EQ(pbx_io_feed(loop, &a.io, PBX_READABLE), 0);
	CHECK_EQ(pbx_io_feed(loop, &b.io, PBX_READABLE), 0);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(a.calls, 1);
	CHECK_EQ(b.calls, 0);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(a.calls, 1);
	CHECK_EQ(b.calls, 1);
	pbx_loop_free(loop);
}

struct feed_stopper {
	struct pbx_timer t;
	struct pbx_io *feeder;
	int calls;
};

static void
feed_stopper_cb(struct pbx_loop *loop, struct pbx_timer *t)
{
	struct feed_stopper *st = (struct feed_stopper *)t;
	st->calls++;
	pbx_io_stop(loop, st->feeder); /* drops its queued delivery */
	pbx_loop_stop(loop);
}

/* A watcher that feeds itself on every call lets fds and timers run. */
static void
test_loop_feed_self_does_not_starve(void)
{
	alarm(3);
	int sv[2];
	REQUIRE(pair(sv) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct fed_rec f = {.io = {.fd = -1, .cb = fed_cb}, .refeed = 1 << 30};
	CHECK_EQ(pbx_io_feed(loop, &f.io, PBX_READABLE), 0);
	struct io_rec rec = {.read_it = true};
	struct pbx_io w = {.fd = sv[0], .cb = io_once_cb, .data = &rec};
	CHECK_EQ(pbx_io_start(loop, &w, PBX_READABLE), 0);
	CHECK_EQ(write(sv[1], "x", 1), 1);
	struct feed_stopper st = {.t.cb = feed_stopper_cb, .feeder = &f.io};
	CHECK_EQ(pbx_timer_start(loop, &st.t, 30), 0);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(st.calls, 1);
	CHECK_EQ(rec.calls, 1);
	CHECK(f.calls > 1);
	int calls = f.calls;
	CHECK_EQ(pbx_loop_run(loop), 0); /* nothing left */
	CHECK_EQ(f.calls, calls);
	pbx_loop_free(loop);
	close(sv[0]);
	close(sv[1]);
}

static void
stop_loop_cb(struct pbx_loop *loop, struct pbx_timer *t)
{
	count_cb(loop, t);
	pbx_loop_stop(loop);
}

/* A stop before the run is not lost: that run returns at once. */
static void
test_loop_stop_before_run(void)
{
	int sv[2];
	REQUIRE(pair(sv) == 0);
	struct pbx_loop *loop;
	REQUIRE(pbx_loop_new(&loop) == 0);
	struct count_timer c = {.t.cb = count_cb};
	CHECK_EQ(pbx_timer_start(loop, &c.t, 100), 0);
	struct io_rec rec = {.read_it = true};
	struct pbx_io w = {.fd = sv[0], .cb = io_once_cb, .data = &rec};
	CHECK_EQ(pbx_io_start(loop, &w, PBX_READABLE), 0);
	CHECK_EQ(write(sv[1], "x", 1), 1);
	struct fed_rec f = {.io = {.fd = -1, .cb = fed_cb}};
	CHECK_EQ(pbx_io_feed(loop, &f.io, PBX_READABLE), 0);

	pbx_loop_stop(loop);
	int64_t t0 = now_ms();
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK(now_ms() - t0 < 50);
	CHECK_EQ(c.calls, 0);
	CHECK_EQ(rec.calls, 0);
	CHECK_EQ(f.calls, 0);

	/* Used up: the next run goes on as usual. */
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(c.calls, 1);
	CHECK_EQ(rec.calls, 1);
	CHECK_EQ(f.calls, 1);

	/* On an idle loop too; and a stop in the last callback of a run
	 * is not carried into the next one. */
	pbx_loop_stop(loop);
	CHECK_EQ(pbx_loop_run(loop), 0);
	struct count_timer last = {.t.cb = stop_loop_cb};
	CHECK_EQ(pbx_timer_start(loop, &last.t, 5), 0);
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(last.calls, 1);
	CHECK_EQ(pbx_timer_start(loop, &c.t, 20), 0);
	t0 = now_ms();
	CHECK_EQ(pbx_loop_run(loop), 0);
	CHECK_EQ(c.calls, 2);
	CHECK(now_ms() - t0 >= 15);
	pbx_loop_free(loop);
	close(sv[0]);
	close(sv[1]);
}

CHECK_MAIN(TEST(test_loop_timer_zero_restart_no_starvation),
    TEST(test_loop_io_forget_then_reuse_fd),

    TEST(test_loop_run_returns_when_idle), TEST(test_loop_io_readable),
    TEST(test_loop_io_writable), TEST(test_loop_io_change_set),
    TEST(test_loop_io_hangup), TEST(test_loop_io_stop_and_free_in_own_callback),
    TEST(test_loop_io_stop_other_pending),
    TEST(test_loop_io_restart_other_pending),
    TEST(test_loop_io_start_from_callback),
    TEST(test_loop_timers_fire_in_deadline_order),
    TEST(test_loop_timer_restart), TEST(test_loop_timer_stop),
    TEST(test_loop_timer_stops_another),
    TEST(test_loop_timer_stops_another_same_deadline), TEST(test_loop_stop),
    TEST(test_loop_signal), TEST(test_loop_signal_keeps_running),
    TEST(test_loop_signal_two_watchers),
    TEST(test_loop_signal_stop_other_in_callback),
    TEST(test_loop_child_exit_status), TEST(test_loop_child_already_exited),
    TEST(test_loop_child_killed), TEST(test_loop_child_stop_leaves_unreaped),
    TEST(test_loop_children_several), TEST(test_loop_free_with_watchers),
    TEST(test_loop_free_in_forked_child),
    TEST(test_loop_feed_unstarted_watcher), TEST(test_loop_feed_before_wait),
    TEST(test_loop_feed_dropped_by_stop_and_forget),
    TEST(test_loop_run_delivers_fed_before_returning),
    TEST(test_loop_feed_kept_across_stop),
    TEST(test_loop_feed_self_does_not_starve), TEST(test_loop_stop_before_run))
