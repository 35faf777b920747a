/* SPDX-License-Identifier: MIT */
/*
 * stage.c: the stage runner: each stage between accept and the content
 * says next, wait or end, as nginx's phase checkers do.
 */
#include "serve.h"

enum serve_verdict
serve_stages_run(const struct serve_stage *const *stages, size_t n,
    uint8_t *pos, struct serve_conn *c)
{
	while (*pos < n) {
		enum serve_verdict v = stages[*pos]->run(c);
		if (v != SERVE_NEXT)
			return v;
		(*pos)++;
	}
	return SERVE_NEXT;
}
