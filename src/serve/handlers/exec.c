/* SPDX-License-Identifier: MIT */
/*
 * exec.c: run a program per connection (UCSPI): the socket on fds 0 and 1,
 * PROTO and the TCP* variables in the environment.
 */
#include "../../cli/log.h"
#include "../serve.h"

#include <unistd.h> /* _exit */

static void
program_exited(struct pbx_loop *loop, struct pbx_child *child, int wstatus)
{
	struct serve_conn *c = child->data;

	(void)loop;
	conn_end_program(c, wstatus);
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
	    /* Accepted blocking, and serve_run marked inherited fds. */
	    .flags = PBX_SPAWN_FDS_CLOEXEC | PBX_SPAWN_SOCK_BLOCKING,

	};
}

void
serve_exec_prepare(struct serve *srv, int fd, const struct pbx_addr *remote)
{
	struct pbx_addr local = srv->local;

	if (pbx_addr_is_any(&local))
		pbx_addr_local(fd, &local);
	pbx_env_set_tcp(&srv->env, &local, remote);
}

void
serve_exec_become(struct serve *srv, int fd)
{
	struct pbx_spawn_opts o = program_opts(srv, fd);
	int r = pbx_exec(&o);

	log_error("run %s: %s", o.argv[0], pbx_strerror(r));
	_exit(1);
}

static void
exec_start(struct serve_conn *c)
{
	struct serve *srv = c->srv;
	struct pbx_spawn_opts o = program_opts(srv, conn_fd(c));

	pbx_env_set_tcp(&srv->env, conn_local(c), &c->remote);
	pid_t pid = pbx_spawn(&o);
	if (pid < 0) {
		log_error("run %s: %s", o.argv[0], pbx_strerror(pid));
		conn_end(c, pid);
		return;
	}
	log_trace("spawn(%s) = %ld", o.argv[0], (long)pid);
	/* The program has the socket now; our copy would hold it open. */
	conn_watch_program(c, pid, program_exited);
}

static void
exec_ready(struct serve_conn *c, unsigned events)
{
	/* exec never asks for fd events: the program does the I/O. */
	(void)c;
	(void)events;
}

const struct serve_handler serve_exec = {
    .name = "exec",
    .start = exec_start,
    .ready = exec_ready,
};
