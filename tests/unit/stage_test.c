/* SPDX-License-Identifier: MIT */
/* stage_test.c: the server's stage runner: next, wait and end, in order. */
#include "../../src/serve/serve.h"
#include "check.h"

/* Each fake stage records its turn in the record's handler state. */
static char trail[16];
static size_t ntrail;

static void
note(char c)
{
	if (ntrail + 1 < sizeof trail)
		trail[ntrail++] = c;
	trail[ntrail] = '\0';
}

static enum serve_verdict
stage_a(struct serve_conn *c)
{
	(void)c;
	note('a');
	return SERVE_NEXT;
}

static enum serve_verdict
stage_b(struct serve_conn *c)
{
	(void)c;
	note('b');
	return SERVE_NEXT;
}

/* Waits the first time it runs, passes when run again. */
static enum serve_verdict
stage_wait_once(struct serve_conn *c)
{
	note('w');
	if (c->u.ptr == NULL) {
		c->u.ptr = c;
		return SERVE_WAIT;
	}
	return SERVE_NEXT;
}

static enum serve_verdict
stage_end(struct serve_conn *c)
{
	(void)c;
	note('e');
	return SERVE_END;
}

static const struct serve_stage A = {.name = "a", .run = stage_a},
				B = {.name = "b", .run = stage_b},
				W = {.name = "w", .run = stage_wait_once},
				E = {.name = "e", .run = stage_end};

static void
reset(struct serve_conn *c)
{
	memset(c, 0, sizeof *c);
	ntrail = 0;
	trail[0] = '\0';
}

static void
test_stage_none_is_next(void)
{
	struct serve_conn c;
	reset(&c);
	CHECK_EQ(serve_stages_run(NULL, 0, &c.stage, &c), SERVE_NEXT);
	CHECK_EQ(c.stage, 0);
	CHECK_STR(trail, "");
}

static void
test_stage_all_pass_in_order(void)
{
	const struct serve_stage *const list[] = {&A, &B, &A};
	struct serve_conn c;
	reset(&c);
	CHECK_EQ(serve_stages_run(list, 3, &c.stage, &c), SERVE_NEXT);
	CHECK_STR(trail, "aba");
	CHECK_EQ(c.stage, 3);
}

static void
test_stage_wait_then_resume(void)
{
	const struct serve_stage *const list[] = {&A, &W, &B};
	struct serve_conn c;
	reset(&c);
	CHECK_EQ(serve_stages_run(list, 3, &c.stage, &c), SERVE_WAIT);
	CHECK_STR(trail, "aw");
	CHECK_EQ(c.stage, 1); /* resumes at the waiting stage */
	/* conn_resume(c, SERVE_NEXT) moves past it and runs on. */
	c.stage++;
	CHECK_EQ(serve_stages_run(list, 3, &c.stage, &c), SERVE_NEXT);
	CHECK_STR(trail, "awb");
	CHECK_EQ(c.stage, 3);
}

static void
test_stage_end_stops_the_rest(void)
{
	const struct serve_stage *const list[] = {&A, &E, &B};
	struct serve_conn c;
	reset(&c);
	CHECK_EQ(serve_stages_run(list, 3, &c.stage, &c), SERVE_END);
	CHECK_STR(trail, "ae");
	CHECK_EQ(c.stage, 1);
}

static void
test_stage_resume_past_the_end(void)
{
	const struct serve_stage *const list[] = {&A};
	struct serve_conn c;
	reset(&c);
	c.stage = 1;
	CHECK_EQ(serve_stages_run(list, 1, &c.stage, &c), SERVE_NEXT);
	CHECK_STR(trail, "");
}

CHECK_MAIN(TEST(test_stage_none_is_next), TEST(test_stage_all_pass_in_order),
    TEST(test_stage_wait_then_resume), TEST(test_stage_end_stops_the_rest),
    TEST(test_stage_resume_past_the_end))
