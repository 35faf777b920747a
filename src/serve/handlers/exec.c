/* SPDX-License-Identifier: MIT */
/*
 * exec.c: run a program per connection (UCSPI): the socket on fds 0 and 1,
 * PROTO and the TCP* variables in the environment.
 */
#include "../serve.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

/* What every program start needs, prepared once per server process. */
static int
exec_setup(struct serve *srv)
{
	const struct serve_opts *o = srv->opts;

	pbx_signals_ignored(&srv->ignored); /* SIGPIPE, and any inherited */
	/* Search PATH once; if the program is not there yet, each caller's
	 * spawn searches again (and reports it missing). */
	srv->program = malloc(PATH_MAX);
	if (srv->program != NULL &&
	    pbx_find_program(o->argv[0], srv->program, PATH_MAX) < 0) {
		free(srv->program);
		srv->program = NULL;
	}
	return pbx_env_init(&srv->env, NULL);
}

static void exec_start(struct serve_conn *c);

/* A caller held for want of processes, waiting for its program. */
#define HELD_FD (-2)

/* Start the programs of the callers held while out of processes. */
static void
exec_retry(struct serve *srv)
{
	struct serve_conn *next;

	for (struct serve_conn *c = srv->conns; c != NULL; c = next) {
		next = c->next;
		if (c->phase != CONN_CONTENT || c->u.prog.fd != HELD_FD)
			continue;
		exec_start(c);
		if (srv->no_procs)
			return; /* still out: the timer comes back */
	}
	serve_procs_back(srv);
}

/* Programs' ends come back to the loop that started them. */
static int
exec_attach(struct serve *srv)
{
	srv->retry = exec_retry;
	return serve_watch_programs(srv);
}

static struct pbx_spawn_opts
program_opts(const struct serve *srv, int fd)
{
	return (struct pbx_spawn_opts){
	    .argv = srv->opts->argv,
	    .path = srv->program,
	    .envp = srv->env.envp,
	    .sock_fd = fd,
	    .layout = PBX_FDS_SERVER,
	    .sigdefault = &srv->ignored,
	    /* serve_run marked inherited fds; a socket accepted raw is
	     * blocking already. */
	    .flags = PBX_SPAWN_FDS_CLOEXEC |
		     (srv->raw_accept ? PBX_SPAWN_SOCK_BLOCKING : 0),
	};
}

/* The rule's variables and TCPCONCURRENCY, when the door has any. */
static void
door_env(struct serve *srv, const struct pbx_addr *remote)
{
	const char *vars[PBX_ENV_VARS_MAX];

	if (srv->rules == NULL && srv->limits == NULL)
		return;
	size_t n = serve_door_vars(srv, remote, vars, PBX_ENV_VARS_MAX);
	pbx_env_set_vars(&srv->env, vars, n);
}

static void
exec_prepare(struct serve *srv, int fd, const struct pbx_addr *remote)
{
	struct pbx_addr local = srv->local;

	if (srv->proxied != NULL && srv->proxied->dest.len != 0)
		local = srv->proxied->dest; /* what the client reached */
	else if (pbx_addr_is_any(&local))
		pbx_addr_local(fd, &local);
	pbx_env_set_tcp(&srv->env, &local, remote);
	door_env(srv, remote);
}

static int
exec_become(struct serve *srv, int fd)
{
	struct pbx_spawn_opts o = program_opts(srv, fd);

	return pbx_exec(&o);
}

static void
exec_start(struct serve_conn *c)
{
	struct serve *srv = c->srv;
	struct pbx_addr local;

	/* A program reads the socket itself: only plain bytes will do
	 * (a TLS connection will need a relay in between). */
	if (!c->stream.tr->plain) {
		conn_program_failed(c, -EPROTONOSUPPORT);
		return;
	}
	conn_local(c, &local);
	pbx_env_set_tcp(&srv->env, &local, &c->remote);
	door_env(srv, &c->remote);
	struct pbx_spawn_opts o = program_opts(srv, conn_fd(c));
	pid_t pid = pbx_spawn(&o);
	if (pid < 0 && serve_is_out_of_procs(pid)) {
		/* Held, not dropped: the program starts once it can. */
		c->u.prog.fd = HELD_FD;
		serve_out_of_procs(srv, "run", pid);
		return;
	}
	if (pid < 0) {
		conn_program_failed(c, pid);
		return;
	}
	serve_procs_back(srv);
	conn_give_to_program(c, pid);
}

const struct serve_handler serve_exec = {
    .name = "exec",
    .flags = SERVE_HANDLER_RAW_SOCKET | SERVE_HANDLER_BECOMES,
    .setup = exec_setup,
    .attach = exec_attach,
    .start = exec_start,
    .prepare = exec_prepare,
    .become = exec_become,
};
