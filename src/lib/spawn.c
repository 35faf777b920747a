/* SPDX-License-Identifier: MIT */
/* spawn.c: run a program on a connection with the UCSPI environment. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

/* Variables a program must not inherit from whoever started the server. */
static const char *const stale_vars[] = {
    "PROTO=", "TCPLOCALIP=", "TCPLOCALPORT=", "TCPLOCALHOST=", "TCPREMOTEIP=",
    "TCPREMOTEPORT=", "TCPREMOTEHOST=", "TCPREMOTEINFO=", NULL};

enum { SLOT_LOCALIP, SLOT_LOCALPORT, SLOT_REMOTEIP, SLOT_REMOTEPORT, NSLOTS };
#define SLOT_SIZE 96 /* "TCPREMOTEIP=" + an IPv6 address with a scope */

static bool
is_stale(const char *var)
{
	for (const char *const *p = stale_vars; *p != NULL; p++)
		if (strncmp(var, *p, strlen(*p)) == 0)
			return true;
	return false;
}

/* Whether var ("NAME=...") names one of vars. */
static bool
is_named(const char *var, const char *const *vars, size_t n)
{
	const char *eq = strchr(var, '=');
	size_t len = eq != NULL ? (size_t)(eq - var) + 1 : strlen(var);

	for (size_t i = 0; i < n; i++)
		if (strncmp(var, vars[i], len) == 0)
			return true;
	return false;
}

/* envp: the kept base entries but those in vars, PROTO, slots, vars. */
static void
env_build(struct pbx_env *env, const char *const *vars, size_t n)
{
	static char proto[] = "PROTO=TCP";
	size_t k = 0;

	for (size_t i = 0; i < env->nbase; i++)
		if (!is_named(env->base[i], vars, n))
			env->envp[k++] = env->base[i];
	env->envp[k++] = proto;
	for (int s = 0; s < NSLOTS; s++)
		env->envp[k++] = env->slots + s * SLOT_SIZE;
	for (size_t i = 0; i < n; i++)
		if (!is_stale(vars[i]))
			env->envp[k++] = (char *)(uintptr_t)vars[i];
	env->envp[k] = NULL;
	env->count = k;
}

int
pbx_env_init(struct pbx_env *env, char *const *base)
{
	size_t n = 0;

	if (base == NULL)
		base = environ;
	while (base[n] != NULL)
		n++;
	*env = (struct pbx_env){0};
	env->envp =
	    calloc(n + NSLOTS + 2 + PBX_ENV_VARS_MAX, sizeof *env->envp);
	env->base = calloc(n + 1, sizeof *env->base);
	env->slots = calloc(NSLOTS, SLOT_SIZE);
	if (env->envp == NULL || env->base == NULL || env->slots == NULL) {
		pbx_env_fini(env);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		if (!is_stale(base[i]))
			env->base[env->nbase++] = base[i];
	env_build(env, NULL, 0);
	return 0;
}

int
pbx_env_set_vars(struct pbx_env *env, const char *const *vars, size_t n)
{
	if (n > PBX_ENV_VARS_MAX)
		return -E2BIG;
	env_build(env, vars, n);
	return 0;
}

void
pbx_env_set_tcp(struct pbx_env *env, const struct pbx_addr *local,
    const struct pbx_addr *remote)
{
	char ip[PBX_ADDR_STRLEN];

	pbx_addr_format_ip(local, ip, sizeof ip);
	snprintf(env->slots + SLOT_LOCALIP * SLOT_SIZE, SLOT_SIZE,
	    "TCPLOCALIP=%s", ip);
	snprintf(env->slots + SLOT_LOCALPORT * SLOT_SIZE, SLOT_SIZE,
	    "TCPLOCALPORT=%u", (unsigned)pbx_addr_port(local));
	pbx_addr_format_ip(remote, ip, sizeof ip);
	snprintf(env->slots + SLOT_REMOTEIP * SLOT_SIZE, SLOT_SIZE,
	    "TCPREMOTEIP=%s", ip);
	snprintf(env->slots + SLOT_REMOTEPORT * SLOT_SIZE, SLOT_SIZE,
	    "TCPREMOTEPORT=%u", (unsigned)pbx_addr_port(remote));
}

void
pbx_env_fini(struct pbx_env *env)
{
	free(env->envp);
	free(env->base);
	free(env->slots);
	*env = (struct pbx_env){0};
}

/* The fds the socket goes to, per layout. */
static void
layout_fds(enum pbx_fd_layout layout, int *rfd, int *wfd)
{
	switch (layout) {
	case PBX_FDS_SERVER:
		*rfd = 0;
		*wfd = 1;
		return;
	case PBX_FDS_CLIENT:
		*rfd = 6;
		*wfd = 7;
		return;
	}
	*rfd = 0;
	*wfd = 1;
}

/*
 * Make the socket ready to be placed per layout: blocking (programs
 * expect it; the caller's copy is closed soon), and above the target fds,
 * since a socket at or below them could be overwritten by the dup2 calls
 * (or keep its close-on-exec flag when dup2'd onto itself). Returns the
 * fd to place; *tmp is a duplicate to close afterwards, or -1.
 */
static int
prepare_socket(const struct pbx_spawn_opts *o, int *rfd, int *wfd, int *tmp)
{
	*tmp = -1;
	layout_fds(o->layout, rfd, wfd);
	int r = o->flags & PBX_SPAWN_SOCK_BLOCKING
		    ? 0
		    : pbx_set_nonblock(o->sock_fd, false);
	if (r < 0)
		return r;
	if (o->sock_fd > *wfd)
		return o->sock_fd;
	*tmp = fcntl(o->sock_fd, F_DUPFD_CLOEXEC, 10);
	return *tmp < 0 ? -errno : *tmp;
}

static int
first_closed(int wfd)
{
	return wfd + 1 > 3 ? wfd + 1 : 3;
}

int
pbx_cloexec_from(int lowfd)
{
	if (close_range((unsigned)lowfd, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		return -errno;
	return 0;
}

static int
build_actions(
    posix_spawn_file_actions_t *fa, int sock, int rfd, int wfd, int flags)
{
	int r = posix_spawn_file_actions_adddup2(fa, sock, rfd);
	if (r == 0)
		r = posix_spawn_file_actions_adddup2(fa, sock, wfd);
	/* Close every fd above stderr except the two we just placed. */
	for (int fd = 3; r == 0 && fd < rfd; fd++)
		r = posix_spawn_file_actions_addclose(fa, fd);
	/* Above the socket's fds, and never stderr. */
	if (r == 0 && !(flags & PBX_SPAWN_FDS_CLOEXEC))
		r = posix_spawn_file_actions_addclosefrom_np(
		    fa, first_closed(wfd));
	return r;
}

/*
 * glibc keeps two signals for itself (32 and 33: thread cancellation and
 * set*id across threads). sigfillset and sigaddset leave them out, and
 * posix_spawn sets every signal outside the sigdefault set that it blocks
 * around the clone, those two included, to SIG_IGN in the child, where
 * exec keeps them ignored. Its own test of the set does not leave them
 * out: a set with their bits resets them like any other. Those bits are
 * what remains of an all-ones set once sigdelset has removed every signal
 * it accepts.
 */
static void
internal_signals(sigset_t *out)
{
	memset(out, 0xff, sizeof *out);
	for (int sig = 1; sig < NSIG; sig++)
		sigdelset(out, sig);
}

static void
add_internal_signals(sigset_t *set)
{
	sigset_t internal;

	internal_signals(&internal);
	sigorset(set, set, &internal);
}

static int
build_attr(posix_spawnattr_t *attr, const sigset_t *sigdefault)
{
	sigset_t dfl, none;

	if (sigdefault != NULL)
		dfl = *sigdefault;
	else
		sigfillset(&dfl);
	add_internal_signals(&dfl);
	sigemptyset(&none);
	int r = posix_spawnattr_setsigdefault(attr, &dfl);
	if (r == 0)
		r = posix_spawnattr_setsigmask(attr, &none);
	if (r == 0)
		r = posix_spawnattr_setflags(
		    attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
	return r;
}

pid_t
pbx_spawn(const struct pbx_spawn_opts *o)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	int rfd, wfd, tmp;
	pid_t pid = -1;

	int sock = prepare_socket(o, &rfd, &wfd, &tmp);
	if (sock < 0)
		return sock;
	int r = posix_spawn_file_actions_init(&fa);
	if (r != 0)
		goto out_close_tmp;
	r = posix_spawnattr_init(&attr);
	if (r != 0)
		goto out_destroy_fa;
	r = build_actions(&fa, sock, rfd, wfd, o->flags);

	if (r == 0)
		r = build_attr(&attr, o->sigdefault);
	char *const *argv = (char *const *)(uintptr_t)o->argv;
	char *const *envp = o->envp != NULL ? o->envp : environ;
	if (r == 0 && o->path != NULL)
		r = posix_spawn(&pid, o->path, &fa, &attr, argv, envp);
	else if (r == 0)
		r = posix_spawnp(&pid, o->argv[0], &fa, &attr, argv, envp);
	posix_spawnattr_destroy(&attr);
out_destroy_fa:
	posix_spawn_file_actions_destroy(&fa);
out_close_tmp:
	if (tmp >= 0)
		close(tmp);
	return r == 0 ? pid : -r;
}

static int
executable(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EACCES;
	return access(path, X_OK) < 0 ? -errno : 0;
}

int
pbx_find_program(const char *name, char *out, size_t size)
{
	const char *dirs = getenv("PATH");
	int last = -ENOENT;

	if (strchr(name, '/') != NULL) {
		size_t len = strlen(name);
		if (len >= size)
			return -ENAMETOOLONG;
		memcpy(out, name, len + 1);
		return executable(out);
	}
	if (dirs == NULL)
		dirs = "/usr/local/bin:/usr/bin:/bin";
	while (*dirs != '\0') {
		size_t len = strcspn(dirs, ":");
		/* An empty entry means the current directory, as in execvp. */
		int n = snprintf(out, size, "%.*s%s%s", (int)len, dirs,
		    len > 0 ? "/" : "", name);
		if (n > 0 && (size_t)n < size) {
			int r = executable(out);
			if (r == 0)
				return 0;
			/* Keep "permission denied" over "not found", as execvp.
			 */
			if (r == -EACCES)
				last = r;
		}
		dirs += len;
		if (*dirs == ':')
			dirs++;
	}
	return last;
}

/*
 * glibc's sigaction refuses its own 32 and 33 (EINVAL), so a process
 * started with them ignored (by a parent's posix_spawn) would pass that on
 * through exec: ask the kernel directly. An all-zero struct is SIG_DFL, no
 * flags and an empty mask whatever the architecture's layout. Harmless
 * here: this process is single-threaded and about to exec.
 */
static void
reset_internal_signals(void)
{
	unsigned long zero[8] = {0}; /* >= any kernel struct sigaction */
	sigset_t internal;

	internal_signals(&internal);
	for (int sig = 1; sig < NSIG; sig++)
		if (sigismember(&internal, sig) == 1)
			syscall(SYS_rt_sigaction, sig, zero, NULL,
			    (size_t)(NSIG / 8));
}

/* Default dispositions for every signal, as a fresh process would have. */
static void
reset_signals(const sigset_t *which)
{
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	sigset_t none;

	/* Fails harmlessly for 9 and 19; glibc's own 32 and 33 below. */
	for (int sig = 1; sig < NSIG; sig++)
		if (which == NULL || sigismember(which, sig) == 1)
			sigaction(sig, &dfl, NULL);
	reset_internal_signals();
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

int
pbx_signals_ignored(sigset_t *out)
{
	struct sigaction sa;

	sigemptyset(out);
	for (int sig = 1; sig < NSIG; sig++) {
		if (sigaction(sig, NULL, &sa) < 0)
			continue; /* glibc reserves 32 and 33 */
		if (sa.sa_handler == SIG_IGN)
			sigaddset(out, sig);
	}
	return 0;
}

int
pbx_exec(const struct pbx_spawn_opts *o)
{
	int rfd, wfd, tmp;

	int sock = prepare_socket(o, &rfd, &wfd, &tmp);
	if (sock < 0)
		return sock;
	if (dup2(sock, rfd) < 0 || dup2(sock, wfd) < 0)
		return -errno;
	if (!(o->flags & PBX_SPAWN_FDS_CLOEXEC)) {
		if (rfd > 3)
			close_range(3, (unsigned)rfd - 1, 0);
		close_range((unsigned)first_closed(wfd), ~0U, 0);
	}
	reset_signals(o->sigdefault);

	char *const *argv = (char *const *)(uintptr_t)o->argv;
	char *const *envp = o->envp != NULL ? o->envp : environ;
	if (o->path != NULL)
		execve(o->path, argv, envp);
	else
		execvpe(o->argv[0], argv, envp);
	return -errno;
}
