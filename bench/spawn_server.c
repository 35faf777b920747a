/* SPDX-License-Identifier: MIT */
/*
 * spawn_server.c: the machine's ceiling for "greeting through a program".
 * One process and one epoll set holding the listener and a signalfd: each
 * caller is accepted and handed to PROGRAM by posix_spawn (glibc: clone
 * with CLONE_VM|CLONE_VFORK, no copy of the server's image) with the
 * socket on fds 0 and 1 and, as tcpserver and pbx do, the server's own
 * environment with the UCSPI variables PROTO, TCPLOCALIP, TCPLOCALPORT,
 * TCPREMOTEIP, TCPREMOTEPORT in front.
 * Children are reaped on SIGCHLD; at most 100 run at once (the listener
 * is unwatched at the limit), the same limit the peers are given.
 *
 * usage: spawn_server HOST PORT PROGRAM [ARG...]   (PORT 0: kernel picks)
 * Says "listening on HOST:PORT" on stderr when ready and "served N
 * connections" when SIGTERM or SIGINT stops it.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_CHILDREN 100

static struct sockaddr_in local;
static char **envp; /* 5 UCSPI slots, then environ; built once */
static char ucspi[5][64];

static int
env_init(void)
{
	size_t n = 0;

	while (environ[n] != NULL)
		n++;
	envp = calloc(n + 6, sizeof *envp);
	if (envp == NULL)
		return -1;
	for (size_t i = 0; i < 5; i++)
		envp[i] = ucspi[i];
	for (size_t i = 0; i < n; i++)
		envp[5 + i] = environ[i];
	return 0;
}

static int
listen_on(const char *host, const char *port)
{
	struct sockaddr *sa = (struct sockaddr *)&local;
	socklen_t sl = sizeof local;
	int one = 1;

	local = (struct sockaddr_in){.sin_family = AF_INET};
	local.sin_port = htons((uint16_t)strtoul(port, NULL, 10));
	if (inet_pton(AF_INET, host, &local.sin_addr) != 1)
		return -1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, sa, sizeof local) < 0 || listen(fd, 4096) < 0 ||
	    getsockname(fd, sa, &sl) < 0)
		return -1;
	fprintf(stderr, "listening on %s:%u\n", host, ntohs(local.sin_port));
	return fd;
}

/* Run argv with fd on 0 and 1; the accepted fd is CLOEXEC, dup2 is not. */
static int
spawn(int fd, const struct sockaddr_in *peer, char **argv)
{
	char lip[INET_ADDRSTRLEN], rip[INET_ADDRSTRLEN];
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none;
	pid_t pid;

	inet_ntop(AF_INET, &local.sin_addr, lip, sizeof lip);
	inet_ntop(AF_INET, &peer->sin_addr, rip, sizeof rip);
	snprintf(ucspi[0], sizeof ucspi[0], "PROTO=TCP");
	snprintf(ucspi[1], sizeof ucspi[1], "TCPLOCALIP=%s", lip);
	snprintf(ucspi[2], sizeof ucspi[2], "TCPLOCALPORT=%u",
	    ntohs(local.sin_port));
	snprintf(ucspi[3], sizeof ucspi[3], "TCPREMOTEIP=%s", rip);
	snprintf(ucspi[4], sizeof ucspi[4], "TCPREMOTEPORT=%u",
	    ntohs(peer->sin_port));
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fd, 0);
	posix_spawn_file_actions_adddup2(&fa, fd, 1);
	/* The child must not inherit our blocked SIGCHLD/SIGTERM. */
	sigemptyset(&none);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
	posix_spawnattr_setsigmask(&attr, &none);
	int r = posix_spawn(&pid, argv[0], &fa, &attr, argv, envp);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	return r;
}

struct server {
	int ep, lfd, sfd;
	unsigned live; /* children running */
	unsigned long served;
};

/* The limit decides whether the listener is watched. */
static void
watch_listener(struct server *s, bool on)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 0};

	epoll_ctl(s->ep, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, s->lfd, &ev);
}

/* Drain the signalfd; reap children. Returns false on SIGTERM/SIGINT. */
static bool
on_signal(struct server *s)
{
	struct signalfd_siginfo si;
	bool go_on = true;

	while (read(s->sfd, &si, sizeof si) > 0)
		if (si.ssi_signo != SIGCHLD)
			go_on = false;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		if (s->live-- == MAX_CHILDREN)
			watch_listener(s, true);
	return go_on;
}

static void
on_listener(struct server *s, char **argv)
{
	while (s->live < MAX_CHILDREN) {
		struct sockaddr_in peer;
		socklen_t sl = sizeof peer;
		int fd = accept4(
		    s->lfd, (struct sockaddr *)&peer, &sl, SOCK_CLOEXEC);
		if (fd < 0)
			return;
		s->served++;
		if (spawn(fd, &peer, argv) == 0)
			s->live++;
		close(fd);
		if (s->live == MAX_CHILDREN)
			watch_listener(s, false);
	}
}

int
main(int argc, char **argv)
{
	struct epoll_event sev = {.events = EPOLLIN, .data.u32 = 1}, out[8];
	struct server s = {0};
	sigset_t sigs;

	if (argc < 4) {
		fprintf(stderr, "usage: spawn_server HOST PORT PROGRAM...\n");
		return 2;
	}
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGCHLD);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	s.sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
	s.lfd = listen_on(argv[1], argv[2]);
	if (env_init() < 0)
		s.lfd = -1;
	s.ep = epoll_create1(EPOLL_CLOEXEC);
	if (s.sfd < 0 || s.lfd < 0 || s.ep < 0 ||
	    epoll_ctl(s.ep, EPOLL_CTL_ADD, s.sfd, &sev) < 0) {
		perror("spawn_server: setup");
		return 1;
	}
	watch_listener(&s, true);
	for (bool go_on = true; go_on;) {
		int n = epoll_wait(s.ep, out, 8, -1);
		for (int i = 0; i < n && go_on; i++) {
			if (out[i].data.u32 == 1)
				go_on = on_signal(&s);
			else
				on_listener(&s, argv + 3);
		}
	}
	fprintf(stderr, "served %lu connections\n", s.served);
	return 0;
}
