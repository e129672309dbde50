/* image_scan.c: the image references of Kubernetes and Compose YAML, found with libyaml,
 * and their in-place rewriting at the byte offsets the parser reports. */
#include "image_ref.h"

#include <errno.h>
#include <fts.h>
#include <strings.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "../common/util.h"

#define SCAN_FILE_MAX ((size_t)64 << 20)
#define MERGE_DEPTH 8
#define LIST_DEPTH 4
/*
 * Aliases and `<<` merge keys let a file of a kilobyte describe a graph whose paths
 * number in the billions: each look-up visits a mapping once, and the whole scan of one
 * file takes at most SCAN_STEPS_BASE + SCAN_STEPS_PER_BYTE x its size in steps (a pair
 * looked at, a node visited, a reference found): linear in the input, whatever its shape.
 */
#define SCAN_STEPS_BASE ((uint64_t)8 << 20)
#define SCAN_STEPS_PER_BYTE 4
#define SCAN_STEPS_POLL 4096 /* steps between two looks at the interruption flag */
#define SCAN_FOUND_COST 64  /* a reference found costs memory too: it counts as this many steps */

typedef struct found {
    img_found pub;
    char *file, *value, *where;
} found;

struct img_scan {
    found *v;
    size_t n, cap;
    const snap_ctx *ctx; /* for its interruption flag; may be NULL */
    uint64_t steps;      /* the work the last buffer took (img_scan_steps) */
};

/* The state of one scan of one buffer. */
typedef struct walk {
    img_scan *s;
    const char *file;
    const unsigned char *buf;
    size_t len;
    size_t base;        /* bytes before libyaml's character 0 (a UTF-8 byte order mark) */
    bool utf8;          /* false for UTF-16 input: offsets cannot be mapped */
    size_t cur_char, cur_byte;
    yaml_document_t *doc;
    snap_err *err;
    const snap_ctx *ctx;
    uint64_t steps, max_steps; /* work done on this buffer, and its budget */
    bool stopped;        /* the budget ran out or an interruption came: err says which */
    uint32_t *seen;      /* per node of doc: the look-up that last visited it */
    size_t nseen;
    uint32_t gen;        /* the current look-up */
} walk;

/* Counts one step; false (with err set) once the budget is spent or the user interrupted. */
static bool step(walk *w)
{
    if (w->stopped)
        return false;
    w->steps++;
    if (w->steps > w->max_steps) {
        err_set(w->err, SNAP_EFAIL, 0, "%s: too much work following YAML aliases and merge keys "
                "(over %llu steps)", w->file, (unsigned long long)w->max_steps);
        err_hint(w->err, "write the file without so many nested aliases, or leave it out (exclude =)");
        w->stopped = true;
        return false;
    }
    if (w->steps % SCAN_STEPS_POLL == 0 && ctx_interrupted(w->ctx, w->err)) {
        w->stopped = true;
        return false;
    }
    return true;
}

/* Whether node n was already visited by the current look-up (and marks it visited). */
static bool seen_before(walk *w, const yaml_node_t *n)
{
    size_t i = (size_t)(n - w->doc->nodes.start);

    if (i >= w->nseen)
        return false;
    if (w->seen[i] == w->gen)
        return true;
    w->seen[i] = w->gen;
    return false;
}

void img_scan_set_ctx(img_scan *s, const snap_ctx *ctx)
{
    s->ctx = ctx;
}

img_scan *img_scan_new(void)
{
    return xcalloc(1, sizeof(img_scan));
}

void img_scan_free(img_scan *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].file);
        free(s->v[i].value);
        free(s->v[i].where);
    }
    free(s->v);
    free(s);
}

size_t img_scan_count(const img_scan *s)
{
    return s->n;
}

const img_found *img_scan_get(const img_scan *s, size_t i)
{
    return &s->v[i].pub;
}

/* libyaml counts characters; the edits need bytes. The cursor only moves forward cheaply. */
static size_t char_to_byte(walk *w, size_t idx)
{
    if (idx < w->cur_char) {
        w->cur_char = 0;
        w->cur_byte = w->base;
    }
    while (w->cur_char < idx && w->cur_byte < w->len) {
        unsigned char c = w->buf[w->cur_byte++];
        /* Count lead bytes only: continuation bytes are 10xxxxxx. */
        while (w->cur_byte < w->len && (w->buf[w->cur_byte] & 0xC0) == 0x80 && c >= 0xC0)
            w->cur_byte++;
        w->cur_char++;
    }
    return w->cur_byte;
}

static bool scalar_is(const yaml_node_t *n, const char *s)
{
    return n != NULL && n->type == YAML_SCALAR_NODE && n->data.scalar.length == strlen(s) &&
           memcmp(n->data.scalar.value, s, n->data.scalar.length) == 0;
}

static const char *scalar_str(const yaml_node_t *n)
{
    return n != NULL && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/*
 * The value of key in a mapping, following `<<` merge keys as YAML 1.1 does. Each mapping
 * is looked into once per look-up, however many aliases lead to it.
 */
static yaml_node_t *map_get_depth(walk *w, yaml_node_t *m, const char *key, int depth)
{
    yaml_document_t *d = w->doc;
    yaml_node_pair_t *p;

    if (m == NULL || m->type != YAML_MAPPING_NODE || depth > MERGE_DEPTH || seen_before(w, m))
        return NULL;
    for (p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        if (!step(w))
            return NULL;
        if (scalar_is(yaml_document_get_node(d, p->key), key))
            return yaml_document_get_node(d, p->value);
    }
    for (p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        if (!scalar_is(yaml_document_get_node(d, p->key), "<<"))
            continue;
        yaml_node_t *v = yaml_document_get_node(d, p->value), *r = NULL;
        if (v != NULL && v->type == YAML_MAPPING_NODE) {
            r = map_get_depth(w, v, key, depth + 1);
        } else if (v != NULL && v->type == YAML_SEQUENCE_NODE) {
            for (yaml_node_item_t *it = v->data.sequence.items.start;
                 r == NULL && it < v->data.sequence.items.top && step(w); it++)
                r = map_get_depth(w, yaml_document_get_node(d, *it), key, depth + 1);
        }
        if (r != NULL || w->stopped)
            return r;
    }
    return NULL;
}

static yaml_node_t *map_get(walk *w, yaml_node_t *m, const char *key)
{
    if (++w->gen == 0) { /* wrapped: forget every mark */
        memset(w->seen, 0, w->nseen * sizeof *w->seen);
        w->gen = 1;
    }
    return map_get_depth(w, m, key, 0);
}

static snap_rc add_found(walk *w, yaml_node_t *n, const char *where)
{
    if (n != NULL && !w->stopped)
        w->steps += SCAN_FOUND_COST - 1;
    if (w->stopped || (n != NULL && !step(w)))
        return w->err->code;
    if (n == NULL)
        return SNAP_OK;
    if (n->type != YAML_SCALAR_NODE)
        return err_set(w->err, SNAP_EFAIL, 0, "%s:%lu:%lu: the image of %s is not a string",
                       w->file, (unsigned long)n->start_mark.line + 1,
                       (unsigned long)n->start_mark.column + 1, where);
    const char *v = (const char *)n->data.scalar.value;
    /* An empty or null image is for the orchestrator to reject; it names nothing to pin. */
    if (v[0] == '\0' || (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                         (strcmp(v, "~") == 0 || strcmp(v, "null") == 0)))
        return SNAP_OK;
    if (strlen(v) != n->data.scalar.length)
        return err_set(w->err, SNAP_EFAIL, 0, "%s:%lu:%lu: the image of %s holds a NUL byte",
                       w->file, (unsigned long)n->start_mark.line + 1,
                       (unsigned long)n->start_mark.column + 1, where);
    if (w->s->n == w->s->cap) {
        w->s->cap = w->s->cap ? w->s->cap * 2 : 16;
        w->s->v = xrealloc(w->s->v, w->s->cap * sizeof *w->s->v);
    }
    found *f = &w->s->v[w->s->n++];
    memset(f, 0, sizeof *f);
    f->file = xstrdup(w->file);
    f->value = xstrdup(v);
    f->where = xstrdup(where);
    f->pub.file = f->file;
    f->pub.value = f->value;
    f->pub.where = f->where;
    f->pub.line = (unsigned long)n->start_mark.line + 1;
    f->pub.column = (unsigned long)n->start_mark.column + 1;
    f->pub.style = (int)n->data.scalar.style;
    if (w->utf8) {
        size_t a = char_to_byte(w, n->start_mark.index);
        size_t b = char_to_byte(w, n->end_mark.index);
        /* The node's range starts at its properties (&anchor, !tag): skip to the scalar. */
        while (a < b && (w->buf[a] == '&' || w->buf[a] == '!')) {
            while (a < b && w->buf[a] != 0 && !strchr(" \t\r\n", w->buf[a]))
                a++;
            while (a < b && w->buf[a] != 0 && strchr(" \t\r\n#", w->buf[a])) {
                if (w->buf[a] == '#')
                    while (a < b && w->buf[a] != '\n')
                        a++;
                else
                    a++;
            }
        }
        f->pub.off = a;
        f->pub.len = b - a;
    }
    return SNAP_OK;
}

static snap_rc walk_pod_spec(walk *w, yaml_node_t *spec, const char *owner)
{
    static const char *const lists[] = {"containers", "initContainers", "ephemeralContainers"};
    yaml_document_t *d = w->doc;

    if (spec == NULL || spec->type != YAML_MAPPING_NODE)
        return SNAP_OK;
    for (size_t k = 0; k < sizeof lists / sizeof lists[0]; k++) {
        yaml_node_t *seq = map_get(w, spec, lists[k]);
        if (seq == NULL || seq->type != YAML_SEQUENCE_NODE)
            continue;
        size_t idx = 0;
        for (yaml_node_item_t *it = seq->data.sequence.items.start;
             it < seq->data.sequence.items.top; it++, idx++) {
            yaml_node_t *c = yaml_document_get_node(d, *it);
            const char *cname = scalar_str(map_get(w, c, "name"));
            char *where = cname != NULL ? xasprintf("%s %s %s", owner, lists[k], cname)
                                        : xasprintf("%s %s[%zu]", owner, lists[k], idx);
            snap_rc rc = add_found(w, map_get(w, c, "image"), where);
            free(where);
            if (rc != SNAP_OK)
                return rc;
        }
    }
    return SNAP_OK;
}

static snap_rc walk_k8s(walk *w, yaml_node_t *root, int depth)
{
    yaml_document_t *d = w->doc;
    const char *kind = scalar_str(map_get(w, root, "kind"));
    yaml_node_t *spec = map_get(w, root, "spec"), *pod = NULL;
    snap_rc rc = SNAP_OK;

    if (kind == NULL)
        return SNAP_OK;
    if (strcmp(kind, "List") == 0 || (strlen(kind) > 4 && strcmp(kind + strlen(kind) - 4, "List") == 0)) {
        yaml_node_t *items = map_get(w, root, "items");
        if (items == NULL || items->type != YAML_SEQUENCE_NODE || depth >= LIST_DEPTH)
            return SNAP_OK;
        for (yaml_node_item_t *it = items->data.sequence.items.start;
             rc == SNAP_OK && it < items->data.sequence.items.top && step(w); it++)
            rc = walk_k8s(w, yaml_document_get_node(d, *it), depth + 1);
        return rc == SNAP_OK && w->stopped ? w->err->code : rc;
    }
    if (strcmp(kind, "Pod") == 0)
        pod = spec;
    else if (strcmp(kind, "Deployment") == 0 || strcmp(kind, "StatefulSet") == 0 ||
             strcmp(kind, "DaemonSet") == 0 || strcmp(kind, "ReplicaSet") == 0 ||
             strcmp(kind, "ReplicationController") == 0 || strcmp(kind, "Job") == 0)
        pod = map_get(w, map_get(w, spec, "template"), "spec");
    else if (strcmp(kind, "CronJob") == 0)
        pod = map_get(w, map_get(w, map_get(w, map_get(w, spec, "jobTemplate"), "spec"),
                                 "template"), "spec");
    else if (strcmp(kind, "PodTemplate") == 0)
        pod = map_get(w, map_get(w, root, "template"), "spec");
    if (pod == NULL)
        return SNAP_OK;
    const char *name = scalar_str(map_get(w, map_get(w, root, "metadata"), "name"));
    char *owner = xasprintf("%s/%s", kind, name != NULL ? name : "?");
    rc = walk_pod_spec(w, pod, owner);
    free(owner);
    return rc;
}

static snap_rc walk_compose(walk *w, yaml_node_t *services)
{
    yaml_document_t *d = w->doc;

    for (yaml_node_pair_t *p = services->data.mapping.pairs.start;
         p < services->data.mapping.pairs.top; p++) {
        const char *svc = scalar_str(yaml_document_get_node(d, p->key));
        yaml_node_t *v = yaml_document_get_node(d, p->value);
        if (svc == NULL || v == NULL || v->type != YAML_MAPPING_NODE)
            continue;
        char *where = xasprintf("service %s", svc);
        snap_rc rc = add_found(w, map_get(w, v, "image"), where);
        free(where);
        if (rc != SNAP_OK)
            return rc;
    }
    return SNAP_OK;
}

static int found_cmp(const void *a, const void *b)
{
    const img_found *x = &((const found *)a)->pub, *y = &((const found *)b)->pub;

    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->column != y->column)
        return x->column < y->column ? -1 : 1;
    return strcmp(x->where, y->where);
}

static unsigned long line_of_byte(const unsigned char *buf, size_t len, size_t off)
{
    unsigned long line = 1;

    for (size_t i = 0; i < off && i < len; i++)
        if (buf[i] == '\n')
            line++;
    return line;
}

static snap_rc yaml_error(walk *w, const yaml_parser_t *p)
{
    if (p->error == YAML_MEMORY_ERROR)
        return err_set(w->err, SNAP_EFAIL, ENOMEM, "%s: out of memory while parsing", w->file);
    if (p->error == YAML_READER_ERROR) {
        snap_rc rc = err_set(w->err, SNAP_EFAIL, 0, "%s:%lu: %s", w->file,
                             line_of_byte(w->buf, w->len, p->problem_offset),
                             p->problem ? p->problem : "cannot read");
        err_hint(w->err, "save the file as UTF-8 text");
        return rc;
    }
    const yaml_mark_t *m = &p->problem_mark;
    snap_rc rc = err_set(w->err, SNAP_EFAIL, 0, "%s:%lu:%lu: invalid YAML: %s%s%s", w->file,
                         (unsigned long)m->line + 1, (unsigned long)m->column + 1,
                         p->problem ? p->problem : "syntax error", p->context ? " " : "",
                         p->context ? p->context : "");
    err_hint(w->err, "fix the YAML there; nothing was captured");
    return rc;
}

snap_rc img_scan_buffer(img_scan *s, const char *file, const char *buf, size_t len,
                        snap_err *err)
{
    yaml_parser_t parser;
    walk w = {.s = s, .file = file, .buf = (const unsigned char *)buf, .len = len, .err = err, .ctx = s->ctx,
              .max_steps = SCAN_STEPS_BASE + SCAN_STEPS_PER_BYTE * (uint64_t)len};
    snap_rc rc = SNAP_OK;
    size_t first = s->n;

    w.utf8 = !(len >= 2 && ((w.buf[0] == 0xFF && w.buf[1] == 0xFE) ||
                            (w.buf[0] == 0xFE && w.buf[1] == 0xFF)));
    if (len >= 3 && w.buf[0] == 0xEF && w.buf[1] == 0xBB && w.buf[2] == 0xBF)
        w.base = 3;
    w.cur_byte = w.base;

    if (!yaml_parser_initialize(&parser))
        return err_set(err, SNAP_EFAIL, ENOMEM, "%s: cannot start the YAML parser", file);
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    for (;;) {
        yaml_document_t doc;
        util_failpoint("images-scan-doc");
        if (ctx_interrupted(w.ctx, err)) {
            rc = err->code;
            break;
        }
        if (!yaml_parser_load(&parser, &doc)) {
            rc = yaml_error(&w, &parser);
            break;
        }
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (root == NULL) {
            yaml_document_delete(&doc);
            break;
        }
        w.doc = &doc;
        w.nseen = (size_t)(doc.nodes.top - doc.nodes.start);
        w.seen = xcalloc(w.nseen + 1, sizeof *w.seen);
        w.gen = 0;
        if (root->type == YAML_MAPPING_NODE) {
            yaml_node_t *services = map_get(&w, root, "services");
            if (map_get(&w, root, "kind") != NULL)
                rc = walk_k8s(&w, root, 0);
            else if (services != NULL && services->type == YAML_MAPPING_NODE)
                rc = walk_compose(&w, services);
            if (rc == SNAP_OK && w.stopped)
                rc = err->code;
        }
        free(w.seen);
        w.seen = NULL;
        w.doc = NULL;
        yaml_document_delete(&doc);
        if (rc != SNAP_OK)
            break;
    }
    yaml_parser_delete(&parser);
    /* Report in file order (the walk visits containers before initContainers). */
    if (rc == SNAP_OK && s->n - first > 1)
        qsort(s->v + first, s->n - first, sizeof *s->v, found_cmp);
    if (rc != SNAP_OK) {
        /* All or nothing for this buffer. */
        for (size_t i = first; i < s->n; i++) {
            free(s->v[i].file);
            free(s->v[i].value);
            free(s->v[i].where);
        }
        s->n = first;
    }
    s->steps = w.steps;
    return rc;
}

uint64_t img_scan_steps(const img_scan *s)
{
    return s->steps;
}

snap_rc img_read_file(const char *path, size_t max, char **buf, size_t *len, snap_err *err)
{
    struct stat st;
    char *b = NULL;
    size_t n = 0, cap;
    int fd;

    *buf = NULL;
    *len = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return err_sys(err, err_from_errno(errno), "cannot open %s", path);
    if (fstat(fd, &st) != 0) {
        snap_rc rc = err_sys(err, err_from_errno(errno), "cannot stat %s", path);
        close(fd);
        return rc;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(err, SNAP_EFAIL, 0, "%s is not a regular file", path);
    }
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return err_set(err, SNAP_EFAIL, EFBIG, "%s is larger than %zu bytes", path, max);
    }
    cap = (size_t)st.st_size + 1;
    b = xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) {
            if (cap > max) {
                free(b);
                close(fd);
                return err_set(err, SNAP_EFAIL, EFBIG, "%s is larger than %zu bytes", path, max);
            }
            cap *= 2;
            b = xrealloc(b, cap);
        }
        ssize_t got = read(fd, b + n, cap - 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            snap_rc rc = err_sys(err, err_from_errno(errno), "cannot read %s", path);
            free(b);
            close(fd);
            return rc;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    close(fd);
    b[n] = '\0';
    *buf = b;
    *len = n;
    return SNAP_OK;
}

snap_rc img_scan_file(img_scan *s, const char *path, snap_err *err)
{
    char *buf;
    size_t len;
    snap_rc rc = img_read_file(path, SCAN_FILE_MAX, &buf, &len, err);

    if (rc != SNAP_OK)
        return rc;
    rc = img_scan_buffer(s, path, buf, len, err);
    free(buf);
    return rc;
}

/* Rewriting. */

typedef struct edit {
    size_t off, len;
    char *text;
    size_t idx;
    bool skip; /* the same scalar as an earlier edit (an alias) */
} edit;

static int edit_cmp(const void *a, const void *b)
{
    const edit *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* A value written as a plain scalar must not start with an indicator nor hold ": " or " #". */
static bool plain_safe(const char *v)
{
    if (v[0] == '\0' || strchr("-?:,[]{}#&*!|>'\"%@`", v[0]) != NULL)
        return false;
    for (const char *p = v; *p; p++) {
        if (strchr(",[]{}", *p) != NULL)
            return false;
        if (*p == ':' && (p[1] == ' ' || p[1] == '\0'))
            return false;
        if (*p == '#' && p > v && p[-1] == ' ')
            return false;
        if ((unsigned char)*p < 0x20 || *p == ' ')
            return false;
    }
    return true;
}

static char *double_quoted(const char *v)
{
    size_t n = strlen(v);
    char *out = xmalloc(n * 4 + 3), *o = out;

    *o++ = '"';
    for (const char *p = v; *p; p++) {
        if (*p == '"' || *p == '\\') {
            *o++ = '\\';
            *o++ = *p;
        } else if ((unsigned char)*p < 0x20) {
            o += sprintf(o, "\\x%02x", (unsigned char)*p);
        } else {
            *o++ = *p;
        }
    }
    *o++ = '"';
    *o = '\0';
    return out;
}

static snap_rc plan_edit(const img_found *f, const char *buf, const char *nv, edit *e,
                         snap_err *err)
{
    const char *raw = buf + f->off;
    size_t vlen = strlen(f->value);

    e->off = f->off;
    e->len = f->len;
    if (f->len == 0)
        return err_set(err, SNAP_EFAIL, 0,
                       "%s:%lu: cannot rewrite the image of %s in place: the file is not UTF-8",
                       f->file, f->line, f->where);
    switch (f->style) {
    case YAML_PLAIN_SCALAR_STYLE:
        if (f->len == vlen && memcmp(raw, f->value, vlen) == 0 && plain_safe(nv)) {
            e->text = xstrdup(nv);
            return SNAP_OK;
        }
        break;
    case YAML_SINGLE_QUOTED_SCALAR_STYLE:
    case YAML_DOUBLE_QUOTED_SCALAR_STYLE:
        if (f->len == vlen + 2 && memcmp(raw + 1, f->value, vlen) == 0 &&
            strpbrk(nv, f->style == YAML_SINGLE_QUOTED_SCALAR_STYLE ? "'" : "\"\\") == NULL) {
            e->off = f->off + 1;
            e->len = vlen;
            e->text = xstrdup(nv);
            return SNAP_OK;
        }
        break;
    default:
        return err_set(err, SNAP_EFAIL, 0,
                       "%s:%lu: cannot rewrite the image of %s in place: it is a block scalar",
                       f->file, f->line, f->where);
    }
    /* Escapes or folding in the source: write the whole scalar anew, on one line. */
    e->text = double_quoted(nv);
    return SNAP_OK;
}

snap_rc img_rewrite(const img_scan *s, const char *buf, size_t len,
                    const char *const *values, char **out, size_t *outlen, snap_err *err)
{
    edit *edits = xcalloc(s->n ? s->n : 1, sizeof *edits);
    size_t ne = 0, total = len, o = 0, at = 0;
    char *res = NULL;
    img_scan *check = NULL;
    snap_rc rc = SNAP_OK;

    *out = NULL;
    *outlen = 0;
    for (size_t i = 0; i < s->n; i++) {
        const img_found *f = &s->v[i].pub;
        if (values[i] == NULL || strcmp(values[i], f->value) == 0)
            continue;
        if (f->off + f->len > len) {
            rc = err_set(err, SNAP_EFAIL, 0, "%s:%lu: the file changed since it was scanned",
                         f->file, f->line);
            goto out;
        }
        rc = plan_edit(f, buf, values[i], &edits[ne], err);
        if (rc != SNAP_OK)
            goto out;
        edits[ne++].idx = i;
    }
    qsort(edits, ne, sizeof *edits, edit_cmp);
    /* One scalar reached twice through an alias is one edit; any other overlap is a bug. */
    size_t last = SIZE_MAX;
    for (size_t i = 0; i < ne; i++) {
        const img_found *f = &s->v[edits[i].idx].pub;
        if (last != SIZE_MAX && edits[i].off == edits[last].off &&
            edits[i].len == edits[last].len) {
            if (strcmp(edits[i].text, edits[last].text) != 0) {
                rc = err_set(err, SNAP_EFAIL, 0,
                             "%s:%lu: one aliased image scalar would get two values", f->file,
                             f->line);
                goto out;
            }
            edits[i].skip = true;
            continue;
        }
        if (last != SIZE_MAX && edits[i].off < edits[last].off + edits[last].len) {
            rc = err_set(err, SNAP_EFAIL, 0, "%s:%lu: overlapping image edits", f->file, f->line);
            goto out;
        }
        last = i;
        total = total - edits[i].len + strlen(edits[i].text);
    }
    res = xmalloc(total + 1);
    for (size_t i = 0; i < ne; i++) {
        if (edits[i].skip)
            continue;
        memcpy(res + o, buf + at, edits[i].off - at);
        o += edits[i].off - at;
        size_t tl = strlen(edits[i].text);
        memcpy(res + o, edits[i].text, tl);
        o += tl;
        at = edits[i].off + edits[i].len;
    }
    memcpy(res + o, buf + at, len - at);
    o += len - at;
    res[o] = '\0';

    /* The result must read back as the same documents with the new values in place. */
    check = img_scan_new();
    const char *file = s->n ? s->v[0].pub.file : "(buffer)";
    rc = img_scan_buffer(check, file, res, o, err);
    if (rc != SNAP_OK) {
        err_prefix(err, "rewritten manifest does not parse");
        goto out;
    }
    if (check->n != s->n) {
        rc = err_set(err, SNAP_EFAIL, 0, "%s: the rewritten manifest holds %zu images, not %zu",
                     file, check->n, s->n);
        goto out;
    }
    for (size_t i = 0; i < s->n; i++) {
        const char *want = values[i] != NULL ? values[i] : s->v[i].pub.value;
        if (strcmp(check->v[i].pub.value, want) != 0 || check->v[i].pub.line != s->v[i].pub.line) {
            rc = err_set(err, SNAP_EFAIL, 0, "%s:%lu: the rewritten image reads \"%s\", not \"%s\"",
                         file, s->v[i].pub.line, check->v[i].pub.value, want);
            goto out;
        }
    }
    *out = res;
    *outlen = o;
    res = NULL;
out:
    for (size_t i = 0; i < ne; i++)
        free(edits[i].text);
    free(edits);
    free(res);
    img_scan_free(check);
    return rc;
}

/* Manifest files. */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

bool img_yaml_name(const char *name)
{
    size_t n = strlen(name);
    return (n > 5 && strcasecmp(name + n - 5, ".yaml") == 0) ||
           (n > 4 && strcasecmp(name + n - 4, ".yml") == 0);
}

static bool excluded(const char *const *exclude, size_t n, const char *rel)
{
    for (size_t i = 0; i < n; i++)
        if (util_glob_match(exclude[i], rel))
            return true;
    return false;
}

/*
 * The YAML files of a root: the root itself when it is a file (whatever its name), else
 * every *.yaml and *.yml below it, in name order, outside hidden directories and excludes.
 */
snap_rc img_yaml_files(const char *root, const char *const *exclude, size_t nexclude,
                       char ***out, size_t *nout, snap_err *err)
{
    char *argv[2] = {(char *)(uintptr_t)root, NULL};
    util_strv files = {0};
    struct stat st;
    FTS *fts;
    FTSENT *ent;
    size_t rootlen = strlen(root);
    snap_rc rc = SNAP_OK;

    *out = NULL;
    *nout = 0;
    if (stat(root, &st) != 0) {
        rc = err_sys(err, err_from_errno(errno), "cannot read manifests %s", root);
        if (rc == SNAP_ENOTFOUND)
            err_hint(err, "check the path given with --images or manifests =");
        return rc;
    }
    if (!S_ISDIR(st.st_mode)) {
        util_strv_push(&files, xstrdup(root));
        *out = files.v;
        *nout = files.n;
        return SNAP_OK;
    }
    fts = fts_open(argv, FTS_PHYSICAL | FTS_NOCHDIR, NULL);
    if (fts == NULL)
        return err_sys(err, err_from_errno(errno), "cannot walk %s", root);
    while ((ent = fts_read(fts)) != NULL) {
        const char *rel = ent->fts_path + rootlen + (ent->fts_path[rootlen] == '/');
        if (ent->fts_info == FTS_DNR || ent->fts_info == FTS_ERR || ent->fts_info == FTS_NS) {
            errno = ent->fts_errno;
            rc = err_sys(err, err_from_errno(errno), "cannot read %s", ent->fts_path);
            break;
        }
        if (ent->fts_level == 0)
            continue;
        if (ent->fts_info == FTS_D && (ent->fts_name[0] == '.' || excluded(exclude, nexclude, rel))) {
            fts_set(fts, ent, FTS_SKIP);
            continue;
        }
        if (ent->fts_info == FTS_F && img_yaml_name(ent->fts_name) && !excluded(exclude, nexclude, rel))
            util_strv_push(&files, xstrdup(ent->fts_path));
    }
    fts_close(fts);
    if (rc != SNAP_OK) {
        util_strv_free(&files);
        return rc;
    }
    if (files.n > 1)
        qsort(files.v, files.n, sizeof *files.v, cmp_str);
    *out = files.v;
    *nout = files.n;
    return SNAP_OK;
}

