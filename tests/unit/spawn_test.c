/* SPDX-License-Identifier: MIT */
/* Unit tests of the spawn module: the UCSPI environment and running a
 * program on a connection (fds, signals, environment). */
#include "addr_util.h"
#include "check.h"
#include "pbx.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The value of name in envp, or NULL; *count gets how often it occurs. */
static const char *
env_get(char *const *envp, const char *name, int *count)
{
	size_t n = strlen(name);
	const char *v = NULL;
	*count = 0;
	for (size_t i = 0; envp[i] != NULL; i++)
		if (strncmp(envp[i], name, n) == 0 && envp[i][n] == '=') {
			v = envp[i] + n + 1;
			(*count)++;
		}
	return v;
}

/* name=want exactly once in env. */
#define CHECK_ENV(envp, name, want)                                            \
	do {                                                                   \
		int count_;                                                    \
		const char *v_ = env_get((envp), (name), &count_);             \
		CHECK_EQ(count_, 1);                                           \
		CHECK_STR(v_, (want));                                         \
	} while (0)

#define CHECK_NO_ENV(envp, name)                                               \
	do {                                                                   \
		int count_;                                                    \
		(void)env_get((envp), (name), &count_);                        \
		if (count_ != 0)                                               \
			CHECK_FAILED("%s is still in the environment", name);  \
	} while (0)

static size_t
env_len(char *const *envp)
{
	size_t n = 0;
	while (envp[n] != NULL)
		n++;
	return n;
}

/* Read until end of stream (or timeout, or cap). Returns the count. */
static size_t
read_to_eof(int fd, char *buf, size_t cap, int timeout_ms)
{
	size_t len = 0;
	int64_t end = now_ms() + timeout_ms;
	while (len + 1 < cap) {
		int left = (int)(end - now_ms());
		if (left <= 0)
			break;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, left) <= 0)
			continue;
		ssize_t r = read(fd, buf + len, cap - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	return len;
}

/* Split text into lines in place; returns the number of lines. */
static int
split_lines(char *text, char **lines, int max)
{
	int n = 0;
	char *p = text;
	while (*p != '\0' && n < max) {
		lines[n++] = p;
		char *nl = strchr(p, '\n');
		if (nl == NULL)
			break;
		*nl = '\0';
		p = nl + 1;
	}
	return n;
}

static int
reap(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1000;
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return -WTERMSIG(st);
}

static void
ignore_signal(int signo)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_IGN;
	sigemptyset(&sa.sa_mask);
	sigaction(signo, &sa, NULL);
}

/* Make the caller's signal state as hostile as a server's can be: some
 * signals blocked, some ignored (SIGPIPE already is, by the harness). */
static void
dirty_signal_state(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGRTMIN + 3);
	sigprocmask(SIG_BLOCK, &set, NULL);
	ignore_signal(SIGINT);
	ignore_signal(SIGHUP);
	ignore_signal(SIGQUIT);
	ignore_signal(SIGRTMIN + 2);
}

/* Nothing blocked, nothing ignored: glibc's internal 32 and 33 included. */
static void
check_sig_lines(const char *blk, const char *ign)
{
	CHECK_STR(blk, "SigBlk:\t0000000000000000");
	CHECK_STR(ign, "SigIgn:\t0000000000000000");
}

/*
 * What a parent's posix_spawn leaves behind: glibc's own signals 32 and 33
 * ignored. glibc's sigaction refuses them, so the kernel is asked
 * directly (its struct sigaction starts with the handler on x86-64 and
 * arm64).
 */
static void
ignore_internal_signals(void)
{
	unsigned long ksa[8] = {(unsigned long)(uintptr_t)SIG_IGN};

	for (int sig = 32; sig <= 33; sig++)
		REQUIRE(syscall(SYS_rt_sigaction, sig, ksa, NULL,
			    (size_t)(NSIG / 8)) == 0);
}

/* The SigIgn mask of this process, from /proc/self/status (0 if unread). */
static unsigned long long
own_sigign(void)
{
	char buf[4096];
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	const char *line = strstr(buf, "SigIgn:\t");
	return line != NULL ? strtoull(line + 8, NULL, 16) : 0;
}

/* ---------------------------------------------------------------- */
/* pbx_env                                                             */
/* ---------------------------------------------------------------- */

static void
test_spawn_env_init_filters_stale(void)
{
	char e0[] = "PATH=/usr/bin:/bin";
	char e1[] = "HOME=/root";
	char e2[] = "TCPREMOTEHOST=stale.example";
	char e3[] = "PROTO=UDP";
	char e4[] = "TCPLOCALIP=9.9.9.9";
	char e5[] = "TCPREMOTEINFO=someone";
	char e6[] = "TCPLOCALHOST=stale.local";
	char e7[] = "FOO=bar";
	char e8[] = "PROTOCOL=keep";
	char e9[] = "XTCPREMOTEIP=keep";
	char e10[] = "TCPREMOTEPORT=1";
	char *const base[] = {
	    e0, e1, e2, e3, e4, e5, e6, e7, e8, e9, e10, NULL};

	struct pbx_env env;
	REQUIRE(pbx_env_init(&env, base) == 0);
	REQUIRE(env.envp != NULL);
	struct pbx_addr local = mkaddr(AF_INET, "127.0.0.1", 8080);
	struct pbx_addr remote = mkaddr(AF_INET, "10.1.2.3", 54321);
	pbx_env_set_tcp(&env, &local, &remote);

	CHECK_EQ(env.count, 10); /* 5 kept + 5 UCSPI */
	CHECK_EQ(env_len(env.envp), env.count);
	CHECK_ENV(env.envp, "PATH", "/usr/bin:/bin");
	CHECK_ENV(env.envp, "HOME", "/root");
	CHECK_ENV(env.envp, "FOO", "bar");
	CHECK_ENV(env.envp, "PROTOCOL", "keep");
	CHECK_ENV(env.envp, "XTCPREMOTEIP", "keep");
	CHECK_NO_ENV(env.envp, "TCPREMOTEHOST");
	CHECK_NO_ENV(env.envp, "TCPREMOTEINFO");
	CHECK_NO_ENV(env.envp, "TCPLOCALHOST");
	CHECK_ENV(env.envp, "PROTO", "TCP");
	CHECK_ENV(env.envp, "TCPLOCALIP", "127.0.0.1");
	CHECK_ENV(env.envp, "TCPLOCALPORT", "8080");
	CHECK_ENV(env.envp, "TCPREMOTEIP", "10.1.2.3");
	CHECK_ENV(env.envp, "TCPREMOTEPORT", "54321");
	/* The base is the caller's and stays untouched. */
	CHECK_STR(e3, "PROTO=UDP");
	CHECK_STR(e4, "TCPLOCALIP=9.9.9.9");
	CHECK_STR(base[2], "TCPREMOTEHOST=stale.example");
	pbx_env_fini(&env);
}

static void
test_spawn_env_init_empty_base(void)
{
	char *const base[] = {NULL};
	struct pbx_env env;
	REQUIRE(pbx_env_init(&env, base) == 0);
	struct pbx_addr local = mkaddr(AF_INET, "127.0.0.1", 1);
	struct pbx_addr remote = mkaddr(AF_INET, "127.0.0.2", 2);
	pbx_env_set_tcp(&env, &local, &remote);
	CHECK_EQ(env.count, 5);
	CHECK_EQ(env_len(env.envp), 5);
	CHECK_ENV(env.envp, "PROTO", "TCP");
	CHECK_ENV(env.envp, "TCPLOCALIP", "127.0.0.1");
	CHECK_ENV(env.envp, "TCPLOCALPORT", "1");
	CHECK_ENV(env.envp, "TCPREMOTEIP", "127.0.0.2");
	CHECK_ENV(env.envp, "TCPREMOTEPORT", "2");
	pbx_env_fini(&env);
}

static void
test_spawn_env_set_tcp_values(void)
{
	char e0[] = "PATH=/bin";
	char *const base[] = {e0, NULL};
	struct pbx_env env;
	REQUIRE(pbx_env_init(&env, base) == 0);

	struct pbx_addr l = mkaddr(AF_INET, "127.0.0.1", 8080);
	struct pbx_addr r = mkaddr(AF_INET, "10.1.2.3", 54321);
	pbx_env_set_tcp(&env, &l, &r);
	CHECK_ENV(env.envp, "TCPLOCALIP", "127.0.0.1");
	CHECK_ENV(env.envp, "TCPLOCALPORT", "8080");
	CHECK_ENV(env.envp, "TCPREMOTEIP", "10.1.2.3");
	CHECK_ENV(env.envp, "TCPREMOTEPORT", "54321");

	/* IPv6, RFC 5952 text. */
	l = mkaddr(AF_INET6, "::1", 80);
	r = mkaddr(AF_INET6, "2001:0db8:0000:0000:0000:0000:0000:0001", 65535);
	pbx_env_set_tcp(&env, &l, &r);
	CHECK_ENV(env.envp, "TCPLOCALIP", "::1");
	CHECK_ENV(env.envp, "TCPLOCALPORT", "80");
	CHECK_ENV(env.envp, "TCPREMOTEIP", "2001:db8::1");
	CHECK_ENV(env.envp, "TCPREMOTEPORT", "65535");

	/* The longest address there is. */
	r = mkaddr(AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 40000);
	pbx_env_set_tcp(&env, &l, &r);
	CHECK_ENV(
	    env.envp, "TCPREMOTEIP", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe");
	CHECK_ENV(env.envp, "TCPREMOTEPORT", "40000");

	/* IPv4-mapped: the dotted quad (a dual-stack listener's peers). */
	l = mkaddr(AF_INET6, "::ffff:127.0.0.1", 4000);
	r = mkaddr(AF_INET6, "::ffff:10.0.0.1", 5);
	pbx_env_set_tcp(&env, &l, &r);
	CHECK_ENV(env.envp, "TCPLOCALIP", "127.0.0.1");
	CHECK_ENV(env.envp, "TCPLOCALPORT", "4000");
	CHECK_ENV(env.envp, "TCPREMOTEIP", "10.0.0.1");
	CHECK_ENV(env.envp, "TCPREMOTEPORT", "5");

	/* Shorter again: nothing left over from the longer values. */
	l = mkaddr(AF_INET, "1.2.3.4", 0);
	r = mkaddr(AF_INET, "5.6.7.8", 9);
	pbx_env_set_tcp(&env, &l, &r);
	CHECK_ENV(env.envp, "TCPLOCALIP", "1.2.3.4");
	CHECK_ENV(env.envp, "TCPLOCALPORT", "0");
	CHECK_ENV(env.envp, "TCPREMOTEIP", "5.6.7.8");
	CHECK_ENV(env.envp, "TCPREMOTEPORT", "9");
	CHECK_ENV(env.envp, "PROTO", "TCP");
	CHECK_ENV(env.envp, "PATH", "/bin");
	CHECK_EQ(env.count, 6);
	CHECK_EQ(env_len(env.envp), 6);
	pbx_env_fini(&env);
}

/* ---------------------------------------------------------------- */
/* pbx_spawn                                                           */
/* ---------------------------------------------------------------- */

static const char server_script[] =
    "echo \"PROTO=$PROTO\"; echo \"TCPLOCALIP=$TCPLOCALIP\"; "
    "echo \"TCPLOCALPORT=$TCPLOCALPORT\"; echo \"TCPREMOTEIP=$TCPREMOTEIP\"; "
    "echo \"TCPREMOTEPORT=$TCPREMOTEPORT\"; echo \"FOO=$FOO\"; "
    "echo \"HOST=${TCPREMOTEHOST-unset}\"; echo fds; ls /proc/self/fd; "
    "grep -E 'SigBlk|SigIgn' /proc/self/status; "
    "echo \"stderr=$(readlink /proc/self/fd/2)\"; "
    "read line; echo \"got=$line\"";

/* Checks the output of server_script. */
static void
check_server_output(char *out, const char *remote_ip, const char *remote_port)
{
	char *l[32];
	int n = split_lines(out, l, 32);
	char stderr_link[256] = "";
	ssize_t sl =
	    readlink("/proc/self/fd/2", stderr_link, sizeof stderr_link - 1);
	if (sl > 0)
		stderr_link[sl] = '\0';
	char want_stderr[300];
	snprintf(want_stderr, sizeof want_stderr, "stderr=%s", stderr_link);
	char want_rip[64], want_rport[64];
	snprintf(want_rip, sizeof want_rip, "TCPREMOTEIP=%s", remote_ip);
	snprintf(
	    want_rport, sizeof want_rport, "TCPREMOTEPORT=%s", remote_port);
	const char *want[] = {"PROTO=TCP", "TCPLOCALIP=127.0.0.1",
	    "TCPLOCALPORT=8080", want_rip, want_rport, "FOO=bar", "HOST=unset",
	    "fds", "0", "1", "2", "3"};
	int nw = (int)(sizeof want / sizeof want[0]);
	if (n != nw + 4) {
		CHECK_FAILED("%d lines of output, want %d", n, nw + 4);
		for (int i = 0; i < n; i++)
			fprintf(stderr, "    out[%d]: %s\n", i, l[i]);
		return;
	}
	for (int i = 0; i < nw; i++)
		CHECK_STR(l[i], want[i]);
	check_sig_lines(l[nw], l[nw + 1]);
	CHECK_STR(l[nw + 2], want_stderr);
	CHECK_STR(l[nw + 3], "got=hello");
}

static void
test_spawn_server_layout(void)
{
	dirty_signal_state();
	char e0[] = "PATH=/usr/bin:/bin";
	char e1[] = "FOO=bar";
	char e2[] = "TCPREMOTEHOST=stale";
	char *const base[] = {e0, e1, e2, NULL};
	struct pbx_env env;
	REQUIRE(pbx_env_init(&env, base) == 0);
	struct pbx_addr l = mkaddr(AF_INET, "127.0.0.1", 8080);
	struct pbx_addr r = mkaddr(AF_INET6, "::1", 4242);
	pbx_env_set_tcp(&env, &l, &r);

	int sp[2];
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
	const char *const argv[] = {"/bin/sh", "-c", server_script, NULL};
	struct pbx_spawn_opts o = {.argv = argv,
	    .envp = env.envp,
	    .sock_fd = sp[1],
	    .layout = PBX_FDS_SERVER};
	pid_t pid = pbx_spawn(&o);
	close(sp[1]);
	pbx_env_fini(&env);
	if (pid < 0) {
		close(sp[0]);
		CHECK_FAILED(
		    "pbx_spawn = %d (%s)", (int)pid, pbx_strerror((int)pid));
		return;
	}
	CHECK_EQ(write(sp[0], "hello\n", 6), 6);
	char out[4096];
	read_to_eof(sp[0], out, sizeof out, 10000);
	close(sp[0]);
	CHECK_EQ(reap(pid), 0);
	check_server_output(out, "::1", "4242");
}

/* A descriptor the caller forgot to mark close-on-exec still must not
 * reach the program ("every other fd closed"). */
static void
test_spawn_closes_inherited_fds(void)
{
	int leak = open("/dev/null", O_RDONLY); /* no O_CLOEXEC, on purpose */
	REQUIRE(leak >= 0);
	int high = dup2(leak, 100);
	REQUIRE(high == 100);
	int sp[2];
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sp) == 0); /* no CLOEXEC */
	const char *const argv[] = {
	    "/bin/sh", "-c", "ls /proc/self/fd | tr '\\n' ' '", NULL};
	struct pbx_spawn_opts o = {.argv = argv,
	    .envp = NULL,
	    .sock_fd = sp[1],
	    .layout = PBX_FDS_SERVER};
	pid_t pid = pbx_spawn(&o);
	close(sp[1]);
	close(leak);
	close(high);
	if (pid < 0) {
		close(sp[0]);
		CHECK_FAILED("pbx_spawn = %d", (int)pid);
		return;
	}
	char out[1024];
	read_to_eof(sp[0], out, sizeof out, 10000);
	close(sp[0]);
	CHECK_EQ(reap(pid), 0);
	/* ls sees 0 1 2 and its own directory fd 3. */
	CHECK_STR(out, "0 1 2 3 ");
}

static void
test_spawn_client_layout(void)
{
	dirty_signal_state();
	int sp[2], in[2], out[2];
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
	REQUIRE(pipe2(in, O_CLOEXEC) == 0);
	REQUIRE(pipe2(out, O_CLOEXEC) == 0);
	/* Our stdin and stdout become pipes for the duration. */
	int save0 = fcntl(0, F_DUPFD_CLOEXEC, 20);
	int save1 = fcntl(1, F_DUPFD_CLOEXEC, 20);
	REQUIRE(save0 >= 0 && save1 >= 0);
	REQUIRE(dup2(in[0], 0) == 0);
	REQUIRE(dup2(out[1], 1) == 1);
	const char *const argv[] = {"/bin/sh", "-c",
	    "ls /proc/self/fd >&7; read a; echo \"stdin=$a\" >&7; "
	    "read b <&6; echo \"sock=$b\" >&7; echo to-stdout; "
	    "grep -E 'SigBlk|SigIgn' /proc/self/status >&7",
	    NULL};
	struct pbx_spawn_opts o = {.argv = argv,
	    .envp = NULL,
	    .sock_fd = sp[1],
	    .layout = PBX_FDS_CLIENT};
	pid_t pid = pbx_spawn(&o);
	dup2(save0, 0);
	dup2(save1, 1);
	close(save0);
	close(save1);
	close(in[0]);
	close(out[1]);
	close(sp[1]);
	if (pid < 0) {
		CHECK_FAILED("pbx_spawn = %d", (int)pid);
		close(in[1]);
		close(out[0]);
		close(sp[0]);
		return;
	}
	CHECK_EQ(write(in[1], "in-line\n", 8), 8);
	close(in[1]);
	CHECK_EQ(write(sp[0], "from-peer\n", 10), 10);
	char sock_out[2048], std_out[256];
	read_to_eof(sp[0], sock_out, sizeof sock_out, 10000);
	read_to_eof(out[0], std_out, sizeof std_out, 10000);
	close(sp[0]);
	close(out[0]);
	CHECK_EQ(reap(pid), 0);
	CHECK_STR(std_out, "to-stdout\n");
	char *l[32];
	int n = split_lines(sock_out, l, 32);
	const char *want[] = {
	    "0", "1", "2", "3", "6", "7", "stdin=in-line", "sock=from-peer"};
	int nw = (int)(sizeof want / sizeof want[0]);
	if (n != nw + 2) {
		CHECK_FAILED("%d lines on the socket, want %d", n, nw + 2);
		for (int i = 0; i < n; i++)
			fprintf(stderr, "    sock[%d]: %s\n", i, l[i]);
		return;
	}
	for (int i = 0; i < nw; i++)
		CHECK_STR(l[i], want[i]);
	check_sig_lines(l[nw], l[nw + 1]);
}

static void
test_spawn_path_search_and_environ(void)
{
	CHECK_EQ(setenv("PBX_TEST_MARK", "42", 1), 0);
	int sp[2];
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
	const char *const argv[] = {
	    "sh", "-c", "echo \"mark=$PBX_TEST_MARK\"", NULL};
	struct pbx_spawn_opts o = {.argv = argv,
	    .envp = NULL,
	    .sock_fd = sp[1],
	    .layout = PBX_FDS_SERVER};
	pid_t pid = pbx_spawn(&o);
	close(sp[1]);
	if (pid < 0) {
		close(sp[0]);
		CHECK_FAILED("pbx_spawn(sh) = %d", (int)pid);
		return;
	}
	char out[256];
	read_to_eof(sp[0], out, sizeof out, 10000);
	close(sp[0]);
	CHECK_EQ(reap(pid), 0);
	CHECK_STR(out, "mark=42\n");
}

static void
test_spawn_missing_program(void)
{
	int sp[2];
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
	const char *const abs_argv[] = {"/nonexistent/pbx-no-such-prog", NULL};
	const char *const path_argv[] = {"pbx-no-such-prog-7f3a", NULL};
	struct pbx_spawn_opts o = {.argv = abs_argv,
	    .envp = NULL,
	    .sock_fd = sp[1],
	    .layout = PBX_FDS_SERVER};
	CHECK_EQ(pbx_spawn(&o), -ENOENT);
	o.argv = path_argv;
	CHECK_EQ(pbx_spawn(&o), -ENOENT);
	o.layout = PBX_FDS_CLIENT;
	CHECK_EQ(pbx_spawn(&o), -ENOENT);
	CHECK_STR(pbx_strerror(-ENOENT), "No such file or directory");
	/* Not executable. */
	const char *const noexec_argv[] = {"/etc/passwd", NULL};
	o.argv = noexec_argv;
	CHECK_EQ(pbx_spawn(&o), -EACCES);
	/* No child is left behind. */
	int st;
	errno = 0;
	CHECK_EQ(waitpid(-1, &st, WNOHANG), -1);
	CHECK_EQ(errno, ECHILD);
	close(sp[0]);
	close(sp[1]);
}

/* ---------------------------------------------------------------- */
/* pbx_exec                                                            */
/* ---------------------------------------------------------------- */

static void
test_spawn_exec_in_forked_child(void)
{
	char e0[] = "PATH=/usr/bin:/bin";
	char e1[] = "FOO=bar";
	char *const base[] = {e0, e1, NULL};
	struct pbx_env env;
	REQUIRE(pbx_env_init(&env, base) == 0);
	struct pbx_addr l = mkaddr(AF_INET, "127.0.0.1", 8080);
	struct pbx_addr r = mkaddr(AF_INET, "127.0.0.3", 5555);
	pbx_env_set_tcp(&env, &l, &r);
	int sp[2];
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
	fflush(NULL);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		alarm(10);
		dirty_signal_state();
		close(sp[0]);
		const char *const argv[] = {
		    "/bin/sh", "-c", server_script, NULL};
		struct pbx_spawn_opts o = {.argv = argv,
		    .envp = env.envp,
		    .sock_fd = sp[1],
		    .layout = PBX_FDS_SERVER};
		int rc = pbx_exec(&o);
		_exit(rc < 0 && rc > -100 ? 100 - rc : 99);
	}
	close(sp[1]);
	pbx_env_fini(&env);
	CHECK_EQ(write(sp[0], "hello\n", 6), 6);
	char out[4096];
	read_to_eof(sp[0], out, sizeof out, 10000);
	close(sp[0]);
	CHECK_EQ(reap(pid), 0);
	check_server_output(out, "127.0.0.3", "5555");
}

static void
test_spawn_exec_missing_program(void)
{
	int sp[2];
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
	fflush(NULL);
	pid_t pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		alarm(10);
		const char *const argv[] = {"pbx-no-such-prog-7f3a", NULL};
		struct pbx_spawn_opts o = {.argv = argv,
		    .envp = NULL,
		    .sock_fd = sp[1],
		    .layout = PBX_FDS_CLIENT};
		int rc = pbx_exec(&o);
		_exit(rc == -ENOENT ? 42 : 43);
	}
	close(sp[0]);
	close(sp[1]);
	CHECK_EQ(reap(pid), 42);
}

static void
test_spawn_find_program(void)
{
	char path[256], dir[] = "/tmp/pbx-find-XXXXXX", file[300];
	const char *old = getenv("PATH");
	char *saved = old != NULL ? strdup(old) : NULL;

	REQUIRE(mkdtemp(dir) != NULL);
	snprintf(file, sizeof file, "%s/tool", dir);
	int fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	REQUIRE(fd >= 0);
	close(fd);
	/* A name with a slash is taken as it is. */
	CHECK_EQ(pbx_find_program("/bin/sh", path, sizeof path), 0);
	CHECK_STR(path, "/bin/sh");
	CHECK_EQ(
	    pbx_find_program("/nonexistent/sh", path, sizeof path), -ENOENT);
	CHECK_EQ(pbx_find_program("/bin/sh", path, 4), -ENAMETOOLONG);
	/* PATH is searched in order; a non-executable match is EACCES. */
	char newpath[600];
	snprintf(newpath, sizeof newpath, "/nonexistent:%s:/bin", dir);
	setenv("PATH", newpath, 1);
	CHECK_EQ(pbx_find_program("sh", path, sizeof path), 0);
	CHECK_STR(path, "/bin/sh");
	CHECK_EQ(pbx_find_program("tool", path, sizeof path), -EACCES);
	CHECK_EQ(chmod(file, 0755), 0);
	CHECK_EQ(pbx_find_program("tool", path, sizeof path), 0);
	CHECK_STR(path, file);
	CHECK_EQ(pbx_find_program("no-such-program-here", path, sizeof path),
	    -ENOENT);
	if (saved != NULL)
		setenv("PATH", saved, 1);
	free(saved);
	unlink(file);
	rmdir(dir);
}

static void
test_spawn_signals_ignored(void)
{
	struct sigaction ign = {.sa_handler = SIG_IGN},
			 dfl = {.sa_handler = SIG_DFL};
	sigset_t set;

	REQUIRE(sigaction(SIGUSR2, &ign, NULL) == 0);
	REQUIRE(sigaction(SIGHUP, &dfl, NULL) == 0);
	CHECK_EQ(pbx_signals_ignored(&set), 0);
	CHECK_EQ(sigismember(&set, SIGUSR2), 1);
	CHECK_EQ(sigismember(&set, SIGHUP), 0);
	CHECK_EQ(sigismember(&set, SIGTERM), 0);
	/* A program started with that set gets SIGUSR2 back at default. */
	int sv[2];
	REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	const char *argv[] = {
	    "/bin/sh", "-c", "grep SigIgn /proc/self/status", NULL};
	struct pbx_spawn_opts o = {.argv = argv,
	    .sock_fd = sv[1],
	    .layout = PBX_FDS_SERVER,
	    .sigdefault = &set};
	pid_t pid = pbx_spawn(&o);
	REQUIRE(pid > 0);
	close(sv[1]);
	char buf[128] = {0};
	ssize_t n = pbx_read_all(sv[0], buf, sizeof buf - 1, 5000);
	CHECK(n > 0);
	unsigned long long mask = 0;
	CHECK(sscanf(buf, "SigIgn: %llx", &mask) == 1);
	CHECK_EQ(mask & (1ull << (SIGUSR2 - 1)), 0);
	int st;
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	close(sv[0]);
}

static const char *const sig_argv[] = {
    "/bin/sh", "-c", "grep -E 'SigBlk|SigIgn' /proc/self/status", NULL};

/* Checks the two signal lines a sig_argv program wrote on fd. */
static void
check_sig_output(int fd, pid_t pid)
{
	char out[512], *l[4];

	read_to_eof(fd, out, sizeof out, 10000);
	CHECK_EQ(reap(pid), 0);
	if (split_lines(out, l, 4) != 2) {
		CHECK_FAILED("not two signal lines: \"%s\"", out);
		return;
	}
	check_sig_lines(l[0], l[1]);
}

/*
 * Inherited ignored 32 and 33 are reset too, with either sigdefault: all
 * signals, or what the caller ignores (as a server passes), which cannot
 * name 32 and 33.
 */
static void
test_spawn_resets_internal_signals(void)
{
	sigset_t ignored;

	ignore_internal_signals();
	CHECK_EQ(own_sigign() & (3ULL << 31), 3ULL << 31);
	REQUIRE(pbx_signals_ignored(&ignored) == 0);
	const sigset_t *sets[] = {NULL, &ignored};
	for (size_t i = 0; i < 2; i++) {
		int sp[2];
		REQUIRE(socketpair(
			    AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
		struct pbx_spawn_opts o = {.argv = sig_argv,
		    .sock_fd = sp[1],
		    .layout = PBX_FDS_SERVER,
		    .sigdefault = sets[i]};
		pid_t pid = pbx_spawn(&o);
		close(sp[1]);
		REQUIRE(pid > 0);
		check_sig_output(sp[0], pid);
		close(sp[0]);
	}
}

static void
test_spawn_exec_resets_internal_signals(void)
{
	sigset_t ignored;

	REQUIRE(pbx_signals_ignored(&ignored) == 0);
	const sigset_t *sets[] = {NULL, &ignored};
	for (size_t i = 0; i < 2; i++) {
		int sp[2];
		REQUIRE(socketpair(
			    AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
		fflush(NULL);
		pid_t pid = fork();
		REQUIRE(pid >= 0);
		if (pid == 0) {
			alarm(10);
			close(sp[0]);
			ignore_internal_signals();
			if ((own_sigign() & (3ULL << 31)) != 3ULL << 31)
				_exit(98);
			struct pbx_spawn_opts o = {.argv = sig_argv,
			    .sock_fd = sp[1],
			    .layout = PBX_FDS_SERVER,
			    .sigdefault = sets[i]};
			pbx_exec(&o);
			_exit(99);
		}
		close(sp[1]);
		check_sig_output(sp[0], pid);
		close(sp[0]);
	}
}

CHECK_MAIN(TEST(test_spawn_signals_ignored), TEST(test_spawn_find_program),
    TEST(test_spawn_env_init_filters_stale),
    TEST(test_spawn_env_init_empty_base), TEST(test_spawn_env_set_tcp_values),
    TEST(test_spawn_server_layout), TEST(test_spawn_closes_inherited_fds),
    TEST(test_spawn_client_layout), TEST(test_spawn_path_search_and_environ),
    TEST(test_spawn_missing_program), TEST(test_spawn_exec_in_forked_child),
    TEST(test_spawn_exec_missing_program),
    TEST(test_spawn_resets_internal_signals),
    TEST(test_spawn_exec_resets_internal_signals))
