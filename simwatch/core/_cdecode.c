/* The compiled fast path of ColumnarDecoder.decode_lines (simwatch/core/columnar.py).
 *
 * decode_lines(lines, max_line_bytes, time_limit, kind, ts, start, bytes_up, bytes_down)
 *
 * For each line of ``lines`` (a sequence), decides whether it is a record in the
 * canonical FORMATS.md shape that this code is certain of, and if so writes its values
 * to the next row of the output columns. Everything else is left to the Python path
 * (msgspec and RecordDecoder: every rule, rejection reason and dead letter of today):
 * the line's index goes to the returned ``fallback`` list. This code never rejects.
 *
 * Certain of, and nothing else (any doubt: fallback):
 *   - a bytes object of at most max_line_bytes bytes, all ASCII;
 *   - one JSON object, optional JSON whitespace around tokens (a trailing "\n" or
 *     "\r\n" included), nothing after it;
 *   - keys: only the 18 FORMATS.md field names, each at most once, no escapes;
 *   - values: strings without escapes or control characters, or integers written
 *     0 or [1-9][0-9]* of at most 16 digits and at most 2**53 (no sign, fraction,
 *     exponent); null, true, false, arrays, objects: fallback;
 *   - the record's rules, as RecordDecoder._check: kind usage, session or event;
 *     record_id 1-256 characters; iccid 18-22 digits; times exactly
 *     YYYY-MM-DDTHH:MM:SSZ of a valid date (other RFC 3339 forms: fallback), usage
 *     start <= end, event time <= time_limit (now + max_future_s), start (usage) or
 *     ts >= 2020-01-01; byte counts integers (required on usage, 0 when absent
 *     elsewhere); mcc "" or 3 digits, mnc "" or 2-3 digits ("" -> None); apn, rat,
 *     operator strings ("" -> None); session: session_id non-empty, status one of
 *     started, interim, ended, end_cause a string or absent; event: type one of
 *     EVENT_TYPES, cause a string or absent. Another kind's fields are not read (as
 *     the scalar decoder), but must still be strings or integers here.
 *
 * Outputs: the numeric columns are written into the caller's writable, C-contiguous
 * buffers (int8 kind, float64 ts and start, int64 counts; each at least len(lines)
 * rows), rows 0..m-1 for the m handled lines in input order. Returns
 * (fallback, record_id, iccid, apn, mcc, mnc, rat, session_id, status, end_cause,
 * event_type, cause, operator): fallback a list of line indices, the others lists of
 * m str (or None). Short values that repeat (apn, codes, enums) are one str object
 * per batch. When none of the first 64 lines is taken, the rest are not tried (a feed
 * in another shape pays the C pass on 64 lines per batch only).
 *
 * Every read is bounds-checked against the line's length; no input can crash it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum {
    F_KIND, F_RECORD_ID, F_ICCID, F_START, F_END, F_TS, F_BYTES_UP, F_BYTES_DOWN,
    F_APN, F_MCC, F_MNC, F_RAT, F_OPERATOR, F_SESSION_ID, F_STATUS, F_END_CAUSE,
    F_TYPE, F_CAUSE, NFIELDS
};

enum { T_ABSENT = 0, T_STR = 1, T_INT = 2 };

typedef struct {
    const char *p; /* string value (not NUL-terminated) */
    Py_ssize_t n;
    int64_t num;
    int type;
} Slot;

#define MAX_COUNT ((int64_t)1 << 53)
#define MAX_RECORD_ID 256
#define EARLIEST_TIME 1577836800.0 /* records.EARLIEST_TIME, 2020-01-01T00:00:00Z */

/* the text columns of the result, in the order returned */
enum {
    C_RECORD_ID, C_ICCID, C_APN, C_MCC, C_MNC, C_RAT, C_SESSION_ID, C_STATUS,
    C_END_CAUSE, C_EVENT_TYPE, C_CAUSE, C_OPERATOR, NTEXT
};

#define KEYIS(k, n, lit) ((n) == (Py_ssize_t)(sizeof(lit) - 1) && memcmp((k), (lit), (n)) == 0)

static int
field_of(const char *k, Py_ssize_t n)
{
    switch (n) {
    case 2:
        if (KEYIS(k, n, "ts")) return F_TS;
        break;
    case 3:
        if (KEYIS(k, n, "end")) return F_END;
        if (KEYIS(k, n, "apn")) return F_APN;
        if (KEYIS(k, n, "mcc")) return F_MCC;
        if (KEYIS(k, n, "mnc")) return F_MNC;
        if (KEYIS(k, n, "rat")) return F_RAT;
        break;
    case 4:
        if (KEYIS(k, n, "kind")) return F_KIND;
        if (KEYIS(k, n, "type")) return F_TYPE;
        break;
    case 5:
        if (KEYIS(k, n, "iccid")) return F_ICCID;
        if (KEYIS(k, n, "start")) return F_START;
        if (KEYIS(k, n, "cause")) return F_CAUSE;
        break;
    case 6:
        if (KEYIS(k, n, "status")) return F_STATUS;
        break;
    case 8:
        if (KEYIS(k, n, "bytes_up")) return F_BYTES_UP;
        if (KEYIS(k, n, "operator")) return F_OPERATOR;
        break;
    case 9:
        if (KEYIS(k, n, "record_id")) return F_RECORD_ID;
        if (KEYIS(k, n, "end_cause")) return F_END_CAUSE;
        break;
    case 10:
        if (KEYIS(k, n, "bytes_down")) return F_BYTES_DOWN;
        if (KEYIS(k, n, "session_id")) return F_SESSION_ID;
        break;
    default:
        break;
    }
    return -1;
}

static inline const char *
skip_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
        p++;
    }
    return p;
}

/* A string body from just after its opening quote: returns the closing quote's
 * position, or NULL when the string is unterminated or holds a backslash, a control
 * character or a non-ASCII byte. */
static inline const char *
string_end(const char *p, const char *e)
{
    while (p < e) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') return p;
        if (c == '\\' || c < 0x20 || c >= 0x80) return NULL;
        p++;
    }
    return NULL;
}

/* One line into slots: 1 when it is one object of known keys with string or
 * integer values, each key at most once; 0 otherwise. */
static int
parse_object(const char *p, const char *e, Slot *s)
{
    for (int i = 0; i < NFIELDS; i++) {
        s[i].type = T_ABSENT;
    }
    p = skip_ws(p, e);
    if (p >= e || *p != '{') return 0;
    p = skip_ws(p + 1, e);
    for (;;) {
        if (p >= e || *p != '"') return 0; /* an empty object too: fallback */
        const char *k = p + 1;
        const char *q = string_end(k, e);
        if (q == NULL) return 0;
        int f = field_of(k, q - k);
        if (f < 0 || s[f].type != T_ABSENT) return 0; /* unknown or repeated key */
        p = skip_ws(q + 1, e);
        if (p >= e || *p != ':') return 0;
        p = skip_ws(p + 1, e);
        if (p >= e) return 0;
        if (*p == '"') {
            const char *v = p + 1;
            q = string_end(v, e);
            if (q == NULL) return 0;
            s[f].p = v;
            s[f].n = q - v;
            s[f].type = T_STR;
            p = q + 1;
        }
        else if (*p >= '0' && *p <= '9') {
            const char *v = p;
            int64_t x = 0;
            if (*p == '0') {
                p++;
            }
            else {
                while (p < e && *p >= '0' && *p <= '9') {
                    if (p - v >= 16) return 0; /* over 16 digits: more than 2**53 */
                    x = x * 10 + (*p - '0');
                    p++;
                }
            }
            if (p < e && ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E')) {
                return 0; /* a leading zero, a fraction, an exponent */
            }
            if (x > MAX_COUNT) return 0;
            s[f].num = x;
            s[f].type = T_INT;
        }
        else {
            return 0; /* null, true, false, a sign, an array, an object, junk */
        }
        p = skip_ws(p, e);
        if (p >= e) return 0;
        if (*p == ',') {
            p = skip_ws(p + 1, e);
            continue;
        }
        if (*p != '}') return 0;
        p = skip_ws(p + 1, e);
        return p == e; /* nothing after the object */
    }
}

static inline int
two(const char *p)
{
    return (p[0] - '0') * 10 + (p[1] - '0');
}

static const int MONTH_DAYS[13] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

/* YYYY-MM-DDTHH:MM:SSZ of a valid date, years 2000-9999 (earlier ones are rejected as
 * too old anyway), as epoch seconds: timeutil._fast_utc. 0 for anything else. */
static int
parse_time(const Slot *s, double *out)
{
    if (s->type != T_STR || s->n != 20) return 0;
    const char *p = s->p;
    static const int digit_at[14] = {0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18};
    for (int i = 0; i < 14; i++) {
        char c = p[digit_at[i]];
        if (c < '0' || c > '9') return 0;
    }
    if (p[4] != '-' || p[7] != '-' || p[10] != 'T' || p[13] != ':' || p[16] != ':'
        || p[19] != 'Z') {
        return 0;
    }
    int64_t y = two(p) * 100 + two(p + 2);
    int mo = two(p + 5), d = two(p + 8), h = two(p + 11), mi = two(p + 14), sec = two(p + 17);
    if (y < 2000 || mo < 1 || mo > 12 || d < 1 || d > MONTH_DAYS[mo] || h > 23 || mi > 59
        || sec > 59) {
        return 0;
    }
    if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))) return 0;
    /* days from civil (H. Hinnant), as timeutil._days_from_civil; y >= 1999 here */
    int64_t yy = y - (mo <= 2);
    int64_t era = yy / 400;
    int64_t yoe = yy - era * 400;
    int64_t doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    int64_t days = era * 146097 + doe - 719468;
    *out = (double)(days * 86400 + h * 3600 + mi * 60 + sec);
    return 1;
}

static inline int
all_digits(const char *p, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return 0;
    }
    return 1;
}

static inline int
is_one_of(const Slot *s, const char *const *words)
{
    for (; *words != NULL; words++) {
        Py_ssize_t n = (Py_ssize_t)strlen(*words);
        if (s->n == n && memcmp(s->p, *words, (size_t)n) == 0) return 1;
    }
    return 0;
}

/* records.SESSION_STATUSES and records.EVENT_TYPES (tests hold them together) */
static const char *const SESSION_STATUSES[] = {"started", "interim", "ended", NULL};
static const char *const EVENT_TYPES[] = {
    "attach", "detach", "location_update", "purge", "auth_failure", "pdp_reject",
    "attach_reject", "blocked", "quota_exhausted", "throttled", NULL};

/* an optional string: absent, or a string; 0 when another type */
static inline int
opt_str(const Slot *s)
{
    return s->type == T_ABSENT || s->type == T_STR;
}

/* an optional byte count: absent (0) or an integer; 0 when another type */
static inline int
opt_count(const Slot *s, int64_t *out)
{
    if (s->type == T_ABSENT) {
        *out = 0;
        return 1;
    }
    if (s->type != T_INT) return 0;
    *out = s->num;
    return 1;
}

typedef struct {
    int8_t kind;
    double ts;
    double start;
    int64_t up;
    int64_t down;
} Row;

/* The record's rules on the slots (RecordDecoder._check, accepting cases only). */
static int
check_record(Slot *s, double time_limit, Row *row)
{
    Slot *k = &s[F_KIND];
    if (k->type != T_STR) return 0;
    if (KEYIS(k->p, k->n, "usage")) row->kind = 0;
    else if (KEYIS(k->p, k->n, "session")) row->kind = 1;
    else if (KEYIS(k->p, k->n, "event")) row->kind = 2;
    else return 0;

    Slot *rid = &s[F_RECORD_ID];
    if (rid->type != T_STR || rid->n < 1 || rid->n > MAX_RECORD_ID) return 0;
    Slot *icc = &s[F_ICCID];
    if (icc->type != T_STR || icc->n < 18 || icc->n > 22 || !all_digits(icc->p, icc->n)) return 0;

    if (row->kind == 0) {
        if (!parse_time(&s[F_START], &row->start) || !parse_time(&s[F_END], &row->ts)) return 0;
        if (!(row->ts >= row->start) || !(row->ts <= time_limit)) return 0;
        if (!(row->start >= EARLIEST_TIME)) return 0;
        if (s[F_BYTES_UP].type != T_INT || s[F_BYTES_DOWN].type != T_INT) return 0;
        row->up = s[F_BYTES_UP].num;
        row->down = s[F_BYTES_DOWN].num;
    }
    else {
        if (!parse_time(&s[F_TS], &row->ts)) return 0;
        if (!(row->ts <= time_limit) || !(row->ts >= EARLIEST_TIME)) return 0;
        row->start = Py_NAN;
        if (!opt_count(&s[F_BYTES_UP], &row->up) || !opt_count(&s[F_BYTES_DOWN], &row->down)) {
            return 0;
        }
    }

    Slot *mcc = &s[F_MCC];
    if (mcc->type == T_INT) return 0;
    if (mcc->type == T_STR && mcc->n != 0 && !(mcc->n == 3 && all_digits(mcc->p, 3))) return 0;
    Slot *mnc = &s[F_MNC];
    if (mnc->type == T_INT) return 0;
    if (mnc->type == T_STR && mnc->n != 0
        && !((mnc->n == 2 || mnc->n == 3) && all_digits(mnc->p, mnc->n))) {
        return 0;
    }
    if (!opt_str(&s[F_APN]) || !opt_str(&s[F_RAT]) || !opt_str(&s[F_OPERATOR])) return 0;

    if (row->kind == 1) {
        Slot *sid = &s[F_SESSION_ID];
        if (sid->type != T_STR || sid->n == 0) return 0;
        if (s[F_STATUS].type != T_STR || !is_one_of(&s[F_STATUS], SESSION_STATUSES)) return 0;
        if (!opt_str(&s[F_END_CAUSE])) return 0;
    }
    else if (row->kind == 2) {
        if (s[F_TYPE].type != T_STR || !is_one_of(&s[F_TYPE], EVENT_TYPES)) return 0;
        if (!opt_str(&s[F_CAUSE])) return 0;
    }
    return 1;
}

/* ---- str objects ------------------------------------------------------------------ */

static PyObject *
ascii_str(const char *p, Py_ssize_t n)
{
    if (n < 2) {
        return PyUnicode_FromStringAndSize(p, n); /* the empty and 1-char singletons */
    }
    PyObject *u = PyUnicode_New(n, 127);
    if (u == NULL) return NULL;
    memcpy(PyUnicode_1BYTE_DATA(u), p, (size_t)n);
    return u;
}

#define GIVE_UP 64
#define CACHE_SLOTS 64
#define CACHE_MAX_CHARS 64

/* One str per distinct short value of a column within a call. */
typedef struct {
    PyObject *obj[CACHE_SLOTS];
} Cache;

static PyObject *
cached_str(Cache *c, const char *p, Py_ssize_t n)
{
    if (n > CACHE_MAX_CHARS) return ascii_str(p, n);
    uint32_t h = 2166136261u;
    for (Py_ssize_t i = 0; i < n; i++) {
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    }
    h ^= (uint32_t)n;
    for (int probe = 0; probe < CACHE_SLOTS; probe++) {
        int i = (int)((h + (uint32_t)probe) & (CACHE_SLOTS - 1));
        PyObject *o = c->obj[i];
        if (o == NULL) {
            o = ascii_str(p, n);
            if (o == NULL) return NULL;
            Py_INCREF(o);
            c->obj[i] = o;
            return o;
        }
        if (PyUnicode_GET_LENGTH(o) == n && memcmp(PyUnicode_1BYTE_DATA(o), p, (size_t)n) == 0) {
            Py_INCREF(o);
            return o;
        }
    }
    return ascii_str(p, n); /* full: a fresh one */
}

/* A text column's value: None when absent (or "" where ``empty_none``). */
static PyObject *
text_value(Cache *c, const Slot *s, int empty_none)
{
    if (s->type != T_STR || (empty_none && s->n == 0)) {
        Py_RETURN_NONE;
    }
    if (c == NULL) return ascii_str(s->p, s->n);
    return cached_str(c, s->p, s->n);
}

/* ---- the entry point --------------------------------------------------------------- */

static int
get_column(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, Py_ssize_t rows, const char *name)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_CONTIG) < 0) return -1;
    if (view->itemsize != itemsize || view->len < itemsize * rows) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd writable items of %zd bytes", name,
                     rows, itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *
decode_lines(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *lines_obj, *kind_obj, *ts_obj, *start_obj, *up_obj, *down_obj;
    Py_ssize_t max_line_bytes;
    double time_limit;
    if (!PyArg_ParseTuple(args, "OndOOOOO:decode_lines", &lines_obj, &max_line_bytes,
                          &time_limit, &kind_obj, &ts_obj, &start_obj, &up_obj, &down_obj)) {
        return NULL;
    }
    PyObject *seq = PySequence_Fast(lines_obj, "lines must be a sequence");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);

    PyObject *result = NULL;
    PyObject *fallback = NULL;
    PyObject *text[NTEXT] = {NULL};
    Cache *caches = NULL;
    Py_buffer views[5];
    int nviews = 0;
    Py_ssize_t m = 0;

    PyObject *bufs[5] = {kind_obj, ts_obj, start_obj, up_obj, down_obj};
    static const Py_ssize_t sizes[5] = {1, 8, 8, 8, 8};
    static const char *const names[5] = {"kind", "ts", "start", "bytes_up", "bytes_down"};
    for (; nviews < 5; nviews++) {
        if (get_column(bufs[nviews], &views[nviews], sizes[nviews], n, names[nviews]) < 0) {
            goto done;
        }
    }
    int8_t *kind = (int8_t *)views[0].buf;
    double *ts = (double *)views[1].buf;
    double *start = (double *)views[2].buf;
    int64_t *up = (int64_t *)views[3].buf;
    int64_t *down = (int64_t *)views[4].buf;

    fallback = PyList_New(0);
    if (fallback == NULL) goto done;
    for (int c = 0; c < NTEXT; c++) {
        text[c] = PyList_New(n); /* NULL items until set; shrunk to m at the end */
        if (text[c] == NULL) goto done;
    }
    caches = (Cache *)PyMem_Calloc(NTEXT, sizeof(Cache));
    if (caches == NULL) {
        PyErr_NoMemory();
        goto done;
    }

    Slot s[NFIELDS];
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *line = PySequence_Fast_GET_ITEM(seq, i);
        Row row;
        int ok = 0;
        /* a feed in another shape (offsets in its times...): after GIVE_UP lines without
         * one taken, the rest of the batch goes to the Python path untried */
        if (m == 0 && i >= GIVE_UP) {
            ok = 0;
        }
        else if (PyBytes_CheckExact(line)) {
            Py_ssize_t len = PyBytes_GET_SIZE(line);
            const char *p = PyBytes_AS_STRING(line);
            ok = len <= max_line_bytes && parse_object(p, p + len, s)
                 && check_record(s, time_limit, &row);
        }
        if (!ok) {
            PyObject *index = PyLong_FromSsize_t(i);
            if (index == NULL) goto done;
            int failed = PyList_Append(fallback, index);
            Py_DECREF(index);
            if (failed < 0) goto done;
            continue;
        }
        PyObject *v[NTEXT];
        v[C_RECORD_ID] = text_value(NULL, &s[F_RECORD_ID], 0);
        v[C_ICCID] = text_value(NULL, &s[F_ICCID], 0);
        v[C_APN] = text_value(&caches[C_APN], &s[F_APN], 1);
        v[C_MCC] = text_value(&caches[C_MCC], &s[F_MCC], 1);
        v[C_MNC] = text_value(&caches[C_MNC], &s[F_MNC], 1);
        v[C_RAT] = text_value(&caches[C_RAT], &s[F_RAT], 1);
        v[C_OPERATOR] = text_value(&caches[C_OPERATOR], &s[F_OPERATOR], 1);
        if (row.kind == 1) {
            v[C_SESSION_ID] = text_value(NULL, &s[F_SESSION_ID], 0);
            v[C_STATUS] = text_value(&caches[C_STATUS], &s[F_STATUS], 0);
            v[C_END_CAUSE] = text_value(&caches[C_END_CAUSE], &s[F_END_CAUSE], 0);
        }
        else {
            v[C_SESSION_ID] = v[C_STATUS] = v[C_END_CAUSE] = Py_NewRef(Py_None);
            Py_INCREF(Py_None);
            Py_INCREF(Py_None);
        }
        if (row.kind == 2) {
            v[C_EVENT_TYPE] = text_value(&caches[C_EVENT_TYPE], &s[F_TYPE], 0);
            v[C_CAUSE] = text_value(&caches[C_CAUSE], &s[F_CAUSE], 0);
        }
        else {
            v[C_EVENT_TYPE] = v[C_CAUSE] = Py_NewRef(Py_None);
            Py_INCREF(Py_None);
        }
        int failed = 0;
        for (int c = 0; c < NTEXT; c++) {
            if (v[c] == NULL) failed = 1;
            PyList_SET_ITEM(text[c], m, v[c]); /* NULL stays NULL: freed with the list */
        }
        if (failed) goto done;
        kind[m] = row.kind;
        ts[m] = row.ts;
        start[m] = row.start;
        up[m] = row.up;
        down[m] = row.down;
        m++;
    }

    result = PyTuple_New(1 + NTEXT);
    if (result == NULL) goto done;
    Py_INCREF(fallback);
    PyTuple_SET_ITEM(result, 0, fallback);
    for (int c = 0; c < NTEXT; c++) {
        PyObject *col = text[c];
        if (m < n) {
            col = PyList_GetSlice(text[c], 0, m);
            if (col == NULL) {
                Py_CLEAR(result);
                goto done;
            }
        }
        else {
            Py_INCREF(col);
        }
        PyTuple_SET_ITEM(result, 1 + c, col);
    }

done:
    if (caches != NULL) {
        for (int c = 0; c < NTEXT; c++) {
            for (int j = 0; j < CACHE_SLOTS; j++) {
                Py_XDECREF(caches[c].obj[j]);
            }
        }
        PyMem_Free(caches);
    }
    for (int c = 0; c < NTEXT; c++) {
        Py_XDECREF(text[c]); /* list_dealloc: Py_XDECREF of every item, NULLs included */
    }
    Py_XDECREF(fallback);
    for (int j = 0; j < nviews; j++) {
        PyBuffer_Release(&views[j]);
    }
    Py_DECREF(seq);
    return result;
}

static PyMethodDef methods[] = {
    {"decode_lines", decode_lines, METH_VARARGS,
     "Canonical FORMATS.md record lines into columns; the others' indices as fallback."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cdecode",
    "The compiled fast path of simwatch.core.columnar.ColumnarDecoder.decode_lines.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__cdecode(void)
{
    return PyModule_Create(&module);
}
