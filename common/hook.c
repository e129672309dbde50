/* hook.c: configured commands run around snap and revert, with facts, a timeout, logged output. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hook.h"
#include "util.h"

extern char **environ;

#define HOOK_LINE_MAX 4096
#define HOOK_KILL_GRACE_MS 2000
#define HOOK_DRAIN_READS 256

json_t *hook_facts_new(const char *command)
{
    return json_pack("{s:s}", "command", command);
}

/* Splits cmd into words: white space separates, '...' and "..." quote (no escapes inside
 * '...', \" and \\ inside "..."), a backslash outside quotes takes the next byte as it is.
 * False on an unterminated quote or an empty command. */
static bool split_words(const char *cmd, util_strv *out)
{
    util_buf w = {0};
    bool in_word = false;
    const char *p = cmd;

    while (*p != '\0') {
        if (isspace((unsigned char)*p)) {
            if (in_word)
                util_strv_push(out, util_buf_take(&w));
            in_word = false;
            p++;
            continue;
        }
        in_word = true;
        if (*p == '\'' || *p == '"') {
            char q = *p++;
            while (*p != '\0' && *p != q) {
                if (q == '"' && *p == '\\' && (p[1] == '"' || p[1] == '\\'))
                    p++;
                util_buf_addc(&w, *p++);
            }
            if (*p != q) {
                util_buf_free(&w);
                return false;
            }
            util_buf_add(&w, "", 0); /* '' is an empty word */
            p++;
        } else if (*p == '\\' && p[1] != '\0') {
            util_buf_addc(&w, p[1]);
            p += 2;
        } else {
            util_buf_addc(&w, *p++);
        }
    }
    if (in_word)
        util_strv_push(out, util_buf_take(&w));
    util_buf_free(&w);
    return out->n > 0;
}

/* environ without the SNAP_ variables the facts set, then the facts. */
static void build_env(const json_t *facts, util_strv *env)
{
    const char *key;
    json_t *v;
    util_strv set = {0};

    json_object_foreach((json_t *)(uintptr_t)facts, key, v) {
        char *name = xasprintf("SNAP_%s", key), *val;
        for (char *c = name; *c; c++)
            *c = (char)toupper((unsigned char)*c);
        if (json_is_string(v))
            val = xstrdup(json_string_value(v));
        else if (json_is_integer(v))
            val = xasprintf("%lld", (long long)json_integer_value(v));
        else if (json_is_real(v))
            val = xasprintf("%.3f", json_real_value(v));
        else {
            free(name);
            continue;
        }
        util_strv_push(&set, name);
        util_strv_push(env, xasprintf("%s=%s", name, val));
        free(val);
    }
    for (char **e = environ; e != NULL && *e != NULL; e++) {
        bool shadowed = false;
        for (size_t i = 0; i < set.n && !shadowed; i++) {
            size_t n = strlen(set.v[i]);
            shadowed = strncmp(*e, set.v[i], n) == 0 && (*e)[n] == '=';
        }
        if (!shadowed)
            util_strv_push(env, xstrdup(*e));
    }
    util_strv_push(env, NULL);
    env->n--; /* NULL-terminated for execve, not counted */
    util_strv_free(&set);
}

typedef struct hook_out {
    const snap_ctx *ctx;
    const char *name;
    util_buf line;
} hook_out;

static void out_flush(hook_out *o)
{
    char *text = util_buf_take(&o->line);

    log_info(o->ctx, "hook %s: %s", o->name, text);
    free(text);
}

static void out_add(hook_out *o, const char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (buf[i] == '\n') {
            out_flush(o);
            continue;
        }
        util_buf_addc(&o->line, buf[i]);
        if (o->line.len >= HOOK_LINE_MAX)
            out_flush(o);
    }
}

/* Reads what is there: 1 when it read some, 0 at end of file (or an error), -1 when a
 * non-blocking read found nothing yet. */
static int out_read(hook_out *o, int fd)
{
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);

    if (n > 0) {
        out_add(o, buf, (size_t)n);
        return 1;
    }
    return n < 0 && (errno == EINTR || errno == EAGAIN) ? -1 : 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Ends the hook's process group: SIGTERM, then SIGKILL; reaps the hook. */
static int kill_group(pid_t pid)
{
    int status = 0;

    kill(-pid, SIGTERM);
    for (int waited = 0; waited < HOOK_KILL_GRACE_MS; waited += 50) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            kill(-pid, SIGKILL); /* what it left behind */
            return status;
        }
        sleep_ms(50);
    }
    kill(-pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

static snap_rc spawn(const char *name, char *const *argv, char *const *envp, int out_fd, pid_t *pid,
                     snap_err *err)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, dfl;
    int e;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
    posix_spawnattr_init(&at);
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGINT);
    sigaddset(&dfl, SIGTERM);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGHUP);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    e = posix_spawnp(pid, argv[0], &fa, &at, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (e == 0)
        return SNAP_OK;
    errno = e;
    err_sys(err, SNAP_EFAIL, "hook %s: cannot run %s", name, argv[0]);
    if (e == ENOENT) {
        err_hint(err, "no such program (looked up in $PATH when the name has no '/'); fix the command in the "
                      "configuration");
        return err_kind(err, "hook_missing");
    }
    if (e == EACCES) {
        err_hint(err, "the file is not executable: chmod +x it, or fix the command in the configuration");
        return err_kind(err, "hook_not_executable");
    }
    return err_kind(err, "hook_exit");
}

/* Waits for the hook while logging its output; its wait status, or -1 on a timeout, -2
 * when interrupted. */
static int watch(const snap_ctx *ctx, const char *name, pid_t pid, int fd, int64_t timeout_s)
{
    hook_out o = {ctx, name, {0}};
    uint64_t deadline = util_now_ms() + (uint64_t)timeout_s * 1000;
    bool open = true;
    int status = 0;

    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (open && poll(&p, 1, 100) > 0)
            open = out_read(&o, fd) != 0;
        else if (!open)
            sleep_ms(5); /* its output ended: it is exiting, or left a child running */
        if (waitpid(pid, &status, WNOHANG) == pid) {
            /* what is left, without waiting: a child it left behind may hold the pipe open
             * and keep writing, so at most HOOK_DRAIN_READS reads */
            int fl = fcntl(fd, F_GETFL);
            fcntl(fd, F_SETFL, fl | O_NONBLOCK);
            for (int i = 0; open && i < HOOK_DRAIN_READS && out_read(&o, fd) == 1; i++)
                ;
            break;
        }
        snap_err ie;
        if (util_now_ms() >= deadline || ctx_interrupted(ctx, &ie)) {
            status = util_now_ms() >= deadline ? -1 : -2;
            kill_group(pid);
            break;
        }
    }
    if (o.line.len > 0)
        out_flush(&o);
    util_buf_free(&o.line);
    return status;
}

snap_rc hook_exec(const snap_ctx *ctx, const char *name, const char *cmd, int64_t timeout_s, const json_t *facts,
                  snap_err *err)
{
    util_strv argv = {0}, env = {0};
    int fds[2] = {-1, -1}, status;
    pid_t pid;
    snap_rc rc;

    if (!split_words(cmd, &argv)) {
        util_strv_free(&argv);
        err_set(err, SNAP_EFAIL, 0, "hook %s: cannot read the command: an empty command or an unterminated quote",
                name);
        err_hint(err, "fix it in the configuration");
        return err_kind(err, "hook_exit");
    }
    util_strv_push(&argv, NULL);
    argv.n--;
    build_env(facts, &env);
    if (pipe2(fds, O_CLOEXEC) != 0) {
        rc = err_sys(err, SNAP_EFAIL, "hook %s: cannot make a pipe", name);
        goto out;
    }
    log_debug(ctx, "running hook %s: %s", name, cmd);
    rc = spawn(name, argv.v, env.v, fds[1], &pid, err);
    close(fds[1]);
    if (rc != SNAP_OK)
        goto out;
    status = watch(ctx, name, pid, fds[0], timeout_s);
    if (status == -1) {
        err_set(err, SNAP_EFAIL, 0, "hook %s: %s did not finish within %llds and was killed", name, argv.v[0],
                (long long)timeout_s);
        err_hint(err, "make it finish sooner, or raise [hooks] timeout ([revert] check_timeout for the check)");
        rc = err_kind(err, "hook_timeout");
    } else if (status == -2) {
        rc = err_set(err, SNAP_EINTR, 0, "hook %s: interrupted; %s was stopped", name, argv.v[0]);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        rc = SNAP_OK;
    } else {
        if (WIFEXITED(status))
            err_set(err, SNAP_EFAIL, 0, "hook %s: %s exited with status %d", name, argv.v[0], WEXITSTATUS(status));
        else
            err_set(err, SNAP_EFAIL, 0, "hook %s: %s was killed by signal %d", name, argv.v[0],
                    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        err_hint(err, "its output is above, prefixed with \"hook %s:\"", name);
        rc = err_kind(err, "hook_exit");
    }
out:
    if (fds[0] >= 0)
        close(fds[0]);
    util_strv_free(&argv);
    util_strv_free(&env);
    return rc;
}

snap_rc hook_run(const snap_ctx *ctx, const char *moment, json_t *facts, snap_err *err)
{
    const char *cmd = NULL;
    int64_t timeout = 60;
    snap_rc rc = cfg_str(ctx->cfg, "hooks", moment, &cmd, err);

    if (rc == SNAP_OK)
        rc = cfg_duration(ctx->cfg, "hooks", "timeout", &timeout, err);
    if (rc != SNAP_OK || cmd == NULL || cmd[0] == '\0')
        return rc;
    json_object_set_new(facts, "phase", json_string(moment));
    return hook_exec(ctx, moment, cmd, timeout, facts, err);
}

void hook_run_after(const snap_ctx *ctx, const char *moment, json_t *facts)
{
    snap_err e;

    if (hook_run(ctx, moment, facts, &e) != SNAP_OK)
        log_warn(ctx, "%s (the result stands)", e.msg);
}

snap_rc hook_run_before(const snap_ctx *ctx, const char *moment, json_t *facts, snap_err *err)
{
    snap_rc rc = hook_run(ctx, moment, facts, err);

    if (rc == SNAP_OK || rc == SNAP_EINTR || rc == SNAP_EUSAGE)
        return rc;
    err->code = SNAP_EHOOK;
    err_prefix(err, "stopped before anything changed");
    return SNAP_EHOOK;
}

void hook_on_failure(const snap_ctx *ctx, json_t *facts, const snap_err *err)
{
    json_object_set_new(facts, "result", json_string("failed"));
    json_object_set_new(facts, "exit_code", json_integer((json_int_t)err->code));
    json_object_set_new(facts, "error_code", json_string(err_json_code(err)));
    hook_run_after(ctx, "on_failure", facts);
}
