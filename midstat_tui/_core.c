/* midstat's compiled core: the connection records, the two endpoint state machines with Zeek's history, and the
 * per-packet loop for the common frame (Ethernet with up to two VLAN tags, or Linux cooked SLL/SLL2; IPv4 without
 * options or IPv6 without extension headers; TCP), all in C.
 *
 * It is a translation of the pure-Python engine, which stays the reference: midstat_tui/tcp/machine.py (the state
 * machines), midstat_tui/tcp/zeek.py (history letters and endpoint states), midstat_tui/decode/fastpath.py and
 * frame.py (the frame), and the live-connection and new-SYN branches of Tracker.segment (midstat_tui/tcp/
 * tracker.py). Every rule here has its explanation there; tests/unit/test_compiled_core.py checks that both
 * engines leave every field of every connection equal, packet by packet, on every capture the project has.
 *
 * No clock, and no I/O but the capture file reader (`Reader`, its own section). Anything the loop does not handle (a SYN on a known tuple, an ended connection, odd flags,
 * a bad checksum, another frame shape, a due timer, an event sink) goes back to the Python tracker.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#define MASK32 0xFFFFFFFFu
#define NONE (-1)                 /* an unset sequence number, ISN, TTL... (Python's None) */

enum { FIN = 0x01, SYN = 0x02, RST = 0x04, PSH = 0x08, ACK = 0x10 };
enum { CLOSED, LISTEN, SYN_SENT, SYN_RCVD, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT, CLOSING, LAST_ACK,
       TIME_WAIT, N_STATES };
enum { Z_INACTIVE, Z_SYN_SENT, Z_SYN_ACK_SENT, Z_PARTIAL, Z_ESTABLISHED, Z_CLOSED, Z_RESET };

#define REORDER_THRESHOLD 0.003
#define HISTORY_CAP 64
#define HISTORY_HEAD 8
#define TRANSITION_SIZE 26        /* struct "<dBBBBhIII" */

static const char *STATE_NAMES[N_STATES] = {
    "CLOSED", "LISTEN", "SYN_SENT", "SYN_RCVD", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2",
    "CLOSE_WAIT", "CLOSING", "LAST_ACK", "TIME_WAIT",
};
static PyObject *state_names[N_STATES];
static PyObject *letters[128];    /* one-character strings */

static inline int seq_lt(uint32_t a, uint32_t b) { return (uint32_t)(a - b) >= 0x80000000u; }
static inline int seq_geq(uint32_t a, uint32_t b) { return (uint32_t)(a - b) < 0x80000000u; }

/* ---------------------------------------------------------------------------------------------------------------
 * Side: one endpoint
 *
 * Compact: an optional 32-bit number (Python None or an int) is a uint32_t and a bit of `have`; counters that
 * count packets are 32 bits (they wrap past 4 billion), those that count bytes 64; the link-layer address is
 * kept inline. Python sees the same attributes, with the same types, as the pure-Python PySide.
 * ------------------------------------------------------------------------------------------------------------ */

/* the letters Zeek records once per direction, as bits of Side.z_once */
static const char ONCE_LETTERS[] = "adiq";

enum { H_isn, H_fin_seq, H_fin_ack_seq, H_snd_nxt, H_rcv_ack, H_delivered, H_z_s, H_z_h, H_z_f, H_z_r };

typedef struct {
    PyObject_HEAD
    double tw_since;              /* NAN: unset */
    double last_data_ts;
    double since, last_ts;        /* when it entered its current state; when it last sent a packet */
    double zw_since;              /* since when it advertises a zero window (NAN: its window is open) */
    unsigned long long packets, ip_bytes, payload, retrans_bytes, missed;
    PyObject *z_counts;           /* None or dict letter -> count */
    uint32_t isn, fin_seq, fin_ack_seq, snd_nxt, rcv_ack, delivered, z_s, z_h, z_f, z_r;
    uint32_t retrans, ooo, zero_win, gaps;
    uint16_t have;                /* bit H_x: field x holds a value */
    int16_t ttl;                  /* NONE: unset */
    unsigned char mac[8];
    unsigned char mac_len, state, zstate, zprev, z_once, gap_open, synack_sent;
} SideObject;

/* read an optional field as int64 (NONE when unset); write one (NONE unsets it) */
#define OPT(SIDE, F) ((((SIDE)->have >> H_##F) & 1) ? (int64_t)(SIDE)->F : (int64_t)NONE)
#define SET(SIDE, F, V) put_opt(&(SIDE)->F, &(SIDE)->have, H_##F, (V))

static inline void put_opt(uint32_t *slot, uint16_t *have, int bit, int64_t value) {
    if (value == NONE) {
        *have &= ~(1u << bit);
    } else {
        *slot = (uint32_t)value;
        *have |= 1u << bit;
    }
}

static PyTypeObject SideType;

static int side_init(SideObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"state", NULL};
    int state = CLOSED;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|i", kwlist, &state))
        return -1;
    if (state < 0 || state > 255) {
        PyErr_SetString(PyExc_ValueError, "state out of range");
        return -1;
    }
    self->state = (unsigned char)state;
    return 0;
}

static PyObject *side_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    SideObject *self = (SideObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->tw_since = NAN;
    self->zw_since = NAN;
    self->ttl = NONE;
    self->z_counts = Py_NewRef(Py_None);
    return (PyObject *)self;
}

static void side_dealloc(SideObject *self) {
    Py_XDECREF(self->z_counts);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *get_opt64(int64_t value) {
    if (value == NONE)
        Py_RETURN_NONE;
    return PyLong_FromLongLong(value);
}

/* None -> NONE; an int in 0..max -> itself */
static int opt_from_python(PyObject *value, int64_t max, int64_t *out) {
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete this attribute");
        return -1;
    }
    if (value == Py_None) {
        *out = NONE;
        return 0;
    }
    long long v = PyLong_AsLongLong(value);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < 0 || v > max) {
        PyErr_Format(PyExc_ValueError, "%lld is out of range", v);
        return -1;
    }
    *out = v;
    return 0;
}

#define OPT_U32(NAME)                                                                                           \
    static PyObject *side_get_##NAME(SideObject *self, void *c) { return get_opt64(OPT(self, NAME)); }         \
    static int side_set_##NAME(SideObject *self, PyObject *v, void *c) {                                        \
        int64_t value;                                                                                          \
        if (opt_from_python(v, MASK32, &value) < 0)                                                             \
            return -1;                                                                                          \
        SET(self, NAME, value);                                                                                 \
        return 0;                                                                                               \
    }
OPT_U32(isn)
OPT_U32(fin_seq)
OPT_U32(fin_ack_seq)
OPT_U32(snd_nxt)
OPT_U32(rcv_ack)
OPT_U32(delivered)
OPT_U32(z_s)
OPT_U32(z_h)
OPT_U32(z_f)
OPT_U32(z_r)

static PyObject *side_get_ttl(SideObject *self, void *c) { return get_opt64(self->ttl); }
static int side_set_ttl(SideObject *self, PyObject *v, void *c) {
    int64_t value;
    if (opt_from_python(v, 255, &value) < 0)
        return -1;
    self->ttl = (int16_t)value;
    return 0;
}

static PyObject *get_opt_double(double value) {
    if (isnan(value))
        Py_RETURN_NONE;
    return PyFloat_FromDouble(value);
}

static int set_opt_double(PyObject *value, double *slot) {
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete this attribute");
        return -1;
    }
    if (value == Py_None) {
        *slot = NAN;
        return 0;
    }
    double v = PyFloat_AsDouble(value);
    if (v == -1.0 && PyErr_Occurred())
        return -1;
    *slot = v;
    return 0;
}

static PyObject *side_get_tw_since(SideObject *self, void *c) { return get_opt_double(self->tw_since); }
static int side_set_tw_since(SideObject *self, PyObject *v, void *c) { return set_opt_double(v, &self->tw_since); }
static PyObject *side_get_zw_since(SideObject *self, void *c) { return get_opt_double(self->zw_since); }
static int side_set_zw_since(SideObject *self, PyObject *v, void *c) { return set_opt_double(v, &self->zw_since); }

static PyObject *side_get_z_once(SideObject *self, void *c) {
    char text[8];
    int n = 0;
    for (int i = 0; ONCE_LETTERS[i]; i++)
        if (self->z_once & (1u << i))
            text[n++] = ONCE_LETTERS[i];
    return PyUnicode_FromStringAndSize(text, n);
}

static int side_set_z_once(SideObject *self, PyObject *v, void *c) {
    if (v == NULL || !PyUnicode_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "z_once must be a str");
        return -1;
    }
    unsigned bits = 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(v);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 ch = PyUnicode_READ_CHAR(v, i);
        const char *at = ch < 128 && ch != 0 ? strchr(ONCE_LETTERS, (int)ch) : NULL;
        if (at == NULL) {
            PyErr_Format(PyExc_ValueError, "z_once holds only the letters %s", ONCE_LETTERS);
            return -1;
        }
        bits |= 1u << (at - ONCE_LETTERS);
    }
    self->z_once = (unsigned char)bits;
    return 0;
}

static int set_object(PyObject **slot, PyObject *v) {
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete this attribute");
        return -1;
    }
    Py_INCREF(v);
    Py_SETREF(*slot, v);
    return 0;
}

/* bytes of at most `cap` bytes into an inline buffer */
static int inline_bytes(PyObject *v, unsigned char *buf, unsigned char *len, Py_ssize_t cap, const char *what) {
    if (v == NULL || !PyBytes_Check(v) || PyBytes_GET_SIZE(v) > cap) {
        PyErr_Format(PyExc_TypeError, "%s must be bytes of at most %zd bytes", what, cap);
        return -1;
    }
    *len = (unsigned char)PyBytes_GET_SIZE(v);
    memcpy(buf, PyBytes_AS_STRING(v), *len);
    return 0;
}

static PyObject *side_get_mac(SideObject *self, void *c) {
    return PyBytes_FromStringAndSize((const char *)self->mac, self->mac_len);
}
static int side_set_mac(SideObject *self, PyObject *v, void *c) {
    return inline_bytes(v, self->mac, &self->mac_len, sizeof(self->mac), "mac");
}

static PyObject *side_get_z_counts(SideObject *self, void *c) { return Py_NewRef(self->z_counts); }
static int side_set_z_counts(SideObject *self, PyObject *v, void *c) {
    if (v != NULL && v != Py_None && !PyDict_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "z_counts must be a dict or None");
        return -1;
    }
    return set_object(&self->z_counts, v);
}

#define GS(NAME) {#NAME, (getter)side_get_##NAME, (setter)side_set_##NAME, NULL, NULL}
static PyGetSetDef side_getset[] = {
    GS(isn), GS(fin_seq), GS(fin_ack_seq), GS(snd_nxt), GS(rcv_ack), GS(delivered),
    GS(z_s), GS(z_h), GS(z_f), GS(z_r), GS(ttl), GS(tw_since), GS(zw_since), GS(z_once), GS(mac), GS(z_counts),
    {NULL},
};
#undef GS

#define SM(NAME, TYPE) {#NAME, TYPE, offsetof(SideObject, NAME), 0, NULL}
static PyMemberDef side_members[] = {
    SM(state, T_UBYTE), SM(zstate, T_UBYTE), SM(zprev, T_UBYTE),
    SM(packets, T_ULONGLONG), SM(ip_bytes, T_ULONGLONG), SM(payload, T_ULONGLONG), SM(retrans_bytes, T_ULONGLONG),
    SM(missed, T_ULONGLONG), SM(retrans, T_UINT), SM(ooo, T_UINT), SM(zero_win, T_UINT), SM(gaps, T_UINT),
    SM(last_data_ts, T_DOUBLE), SM(since, T_DOUBLE), SM(last_ts, T_DOUBLE), SM(gap_open, T_BOOL), SM(synack_sent, T_BOOL),
    {NULL},
};
#undef SM

/* Every attribute, in the pure-Python class's order: what pickling saves and restores. */
static const char *SIDE_FIELDS[] = {
    "state", "isn", "fin_seq", "fin_ack_seq", "snd_nxt", "rcv_ack", "tw_since",
    "packets", "ip_bytes", "payload", "retrans_bytes", "retrans", "ooo", "zero_win", "gap_open",
    "last_data_ts", "delivered", "gaps", "missed", "synack_sent", "ttl", "mac",
    "zstate", "zprev", "z_once", "z_s", "z_h", "z_f", "z_r", "z_counts", "since", "zw_since", "last_ts", NULL,
};

static PyObject *fields_state(PyObject *self, const char **names) {
    Py_ssize_t n = 0;
    while (names[n])
        n++;
    PyObject *state = PyTuple_New(n);
    if (state == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *value = PyObject_GetAttrString(self, names[i]);
        if (value == NULL) {
            Py_DECREF(state);
            return NULL;
        }
        PyTuple_SET_ITEM(state, i, value);
    }
    return state;
}

static PyObject *fields_restore(PyObject *self, PyObject *state, const char **names) {
    Py_ssize_t n = 0;
    while (names[n])
        n++;
    if (!PyTuple_Check(state) || PyTuple_GET_SIZE(state) != n) {
        PyErr_SetString(PyExc_ValueError, "state tuple of the wrong shape");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        if (PyObject_SetAttrString(self, names[i], PyTuple_GET_ITEM(state, i)) < 0)
            return NULL;
    Py_RETURN_NONE;
}

static PyObject *side_reduce(PyObject *self, PyObject *unused) {
    PyObject *state = fields_state(self, SIDE_FIELDS);
    if (state == NULL)
        return NULL;
    return Py_BuildValue("(O()N)", (PyObject *)Py_TYPE(self), state);
}

static PyObject *side_setstate(PyObject *self, PyObject *state) { return fields_restore(self, state, SIDE_FIELDS); }

static PyMethodDef side_methods[] = {
    {"__reduce__", side_reduce, METH_NOARGS, NULL},
    {"__setstate__", side_setstate, METH_O, NULL},
    {NULL},
};

static PyTypeObject SideType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "midstat_tui._core.Side",
    .tp_doc = "One endpoint of a connection, as inferred from the packets it sent and received "
              "(the compiled twin of midstat_tui.tcp.connection.PySide).",
    .tp_basicsize = sizeof(SideObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = side_new,
    .tp_init = (initproc)side_init,
    .tp_dealloc = (destructor)side_dealloc,
    .tp_getset = side_getset,
    .tp_members = side_members,
    .tp_methods = side_methods,
};

/* ---------------------------------------------------------------------------------------------------------------
 * Connection
 *
 * The addresses are inline; the Zeek history and the packed state history are exact-size PyMem buffers (a str
 * and a bytearray to Python, made when asked for).
 * ------------------------------------------------------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD
    long long id;
    PyObject *key, *vlan, *ended, *rst_by;
    SideObject *c, *s;
    double first, last, end_ts, syn_ts, synack_ts, rtt_server, rtt_client, deadline;   /* NAN: unset */
    char *hist;                   /* Zeek history letters, hist_len of them */
    unsigned char *log;           /* log_n packed transitions */
    uint32_t hist_len;
    uint32_t transitions_dropped, suspicious_rst, odd_rst, bad_flags, bad_checksum;
    int shard;
    uint16_t c_port, s_port, log_n;
    unsigned char c_addr[16], s_addr[16];
    unsigned char c_addr_len, s_addr_len;
    char midstream, flipped, pooled;
    struct PacketRing *ring;      /* live: the last packets' headers (the packet ring, below); NULL: none */
} ConnObject;

static void ring_free(ConnObject *conn);

static PyTypeObject ConnType;

static PyObject *conn_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    ConnObject *self = (ConnObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->c = (SideObject *)side_new(&SideType, NULL, NULL);
    self->s = (SideObject *)side_new(&SideType, NULL, NULL);
    if (self->c == NULL || self->s == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->key = Py_NewRef(Py_None);
    self->vlan = Py_NewRef(Py_None);
    self->ended = Py_NewRef(Py_None);
    self->rst_by = Py_NewRef(Py_None);
    self->end_ts = self->syn_ts = self->synack_ts = self->rtt_server = self->rtt_client = NAN;
    return (PyObject *)self;
}

static int conn_init(ConnObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"conn_id", "shard", "key", "vlan", "c_addr", "c_port", "s_addr", "s_port", "ts", NULL};
    long long conn_id;
    int shard, c_port, s_port;
    PyObject *key, *vlan, *c_addr, *s_addr;
    double ts;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "LiOOSiSid", kwlist, &conn_id, &shard, &key, &vlan, &c_addr,
                                     &c_port, &s_addr, &s_port, &ts))
        return -1;
    if (c_port < 0 || c_port > 65535 || s_port < 0 || s_port > 65535) {
        PyErr_SetString(PyExc_ValueError, "a port is 0 to 65535");
        return -1;
    }
    if (inline_bytes(c_addr, self->c_addr, &self->c_addr_len, 16, "c_addr") < 0 ||
        inline_bytes(s_addr, self->s_addr, &self->s_addr_len, 16, "s_addr") < 0)
        return -1;
    self->id = conn_id;
    self->shard = shard;
    Py_SETREF(self->key, Py_NewRef(key));
    Py_SETREF(self->vlan, Py_NewRef(vlan));
    self->c_port = (uint16_t)c_port;
    self->s_port = (uint16_t)s_port;
    self->first = self->last = ts;
    return 0;
}

static void conn_dealloc(ConnObject *self) {
    Py_XDECREF(self->key);
    Py_XDECREF(self->vlan);
    Py_XDECREF(self->ended);
    Py_XDECREF(self->rst_by);
    Py_XDECREF(self->c);
    Py_XDECREF(self->s);
    PyMem_Free(self->hist);
    PyMem_Free(self->log);
    ring_free(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

#define CONN_OPT_DOUBLE(NAME)                                                                                   \
    static PyObject *conn_get_##NAME(ConnObject *self, void *c) { return get_opt_double(self->NAME); }         \
    static int conn_set_##NAME(ConnObject *self, PyObject *v, void *c) { return set_opt_double(v, &self->NAME); }
CONN_OPT_DOUBLE(end_ts)
CONN_OPT_DOUBLE(syn_ts)
CONN_OPT_DOUBLE(synack_ts)
CONN_OPT_DOUBLE(rtt_server)
CONN_OPT_DOUBLE(rtt_client)

static int conn_set_side(SideObject **slot, PyObject *v) {
    if (v == NULL || !PyObject_TypeCheck(v, &SideType)) {
        PyErr_SetString(PyExc_TypeError, "a connection's side must be a Side");
        return -1;
    }
    Py_INCREF(v);
    Py_SETREF(*slot, (SideObject *)v);
    return 0;
}
static PyObject *conn_get_c(ConnObject *self, void *c) { return Py_NewRef((PyObject *)self->c); }
static int conn_set_c(ConnObject *self, PyObject *v, void *c) { return conn_set_side(&self->c, v); }
static PyObject *conn_get_s(ConnObject *self, void *c) { return Py_NewRef((PyObject *)self->s); }
static int conn_set_s(ConnObject *self, PyObject *v, void *c) { return conn_set_side(&self->s, v); }

static PyObject *conn_get_c_addr(ConnObject *self, void *c) {
    return PyBytes_FromStringAndSize((const char *)self->c_addr, self->c_addr_len);
}
static PyObject *conn_get_s_addr(ConnObject *self, void *c) {
    return PyBytes_FromStringAndSize((const char *)self->s_addr, self->s_addr_len);
}

/* the Zeek history: one letter appended (the only change the packet path makes), or all of it replaced */
static int hist_append(ConnObject *conn, char letter) {
    char *grown = PyMem_Realloc(conn->hist, conn->hist_len + 1);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    grown[conn->hist_len++] = letter;
    conn->hist = grown;
    return 0;
}

static PyObject *conn_get_history(ConnObject *self, void *c) {
    return PyUnicode_DecodeASCII(self->hist ? self->hist : "", self->hist_len, NULL);
}
static int conn_set_history(ConnObject *self, PyObject *v, void *c) {
    if (v == NULL || !PyUnicode_Check(v) || !PyUnicode_IS_ASCII(v)) {
        PyErr_SetString(PyExc_TypeError, "history must be an ASCII str");
        return -1;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(v);
    char *buf = n ? PyMem_Malloc(n) : NULL;
    if (n && buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (n)
        memcpy(buf, PyUnicode_1BYTE_DATA(v), n);
    PyMem_Free(self->hist);
    self->hist = buf;
    self->hist_len = (uint32_t)n;
    return 0;
}

static PyObject *conn_get_log(ConnObject *self, void *c) {
    if (self->log_n == 0)
        Py_RETURN_NONE;
    return PyByteArray_FromStringAndSize((const char *)self->log, (Py_ssize_t)self->log_n * TRANSITION_SIZE);
}
static int conn_set_log(ConnObject *self, PyObject *v, void *c) {
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete this attribute");
        return -1;
    }
    if (v == Py_None) {
        PyMem_Free(self->log);
        self->log = NULL;
        self->log_n = 0;
        return 0;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(v, &view, PyBUF_SIMPLE) < 0)
        return -1;
    int rc = -1;
    if (view.len % TRANSITION_SIZE != 0 || view.len / TRANSITION_SIZE > HISTORY_CAP) {
        PyErr_SetString(PyExc_ValueError, "_log holds whole transitions, at most HISTORY_CAP of them");
    } else {
        unsigned char *buf = view.len ? PyMem_Malloc(view.len) : NULL;
        if (view.len && buf == NULL) {
            PyErr_NoMemory();
        } else {
            if (view.len)
                memcpy(buf, view.buf, view.len);
            PyMem_Free(self->log);
            self->log = buf;
            self->log_n = (uint16_t)(view.len / TRANSITION_SIZE);
            rc = 0;
        }
    }
    PyBuffer_Release(&view);
    return rc;
}

static PyObject *conn_get_client_state(ConnObject *self, void *c) {
    int st = self->c->state;
    return st < N_STATES ? Py_NewRef(state_names[st]) : PyLong_FromLong(st);
}

static PyObject *conn_get_server_state(ConnObject *self, void *c) {
    int st = self->s->state;
    return st < N_STATES ? Py_NewRef(state_names[st]) : PyLong_FromLong(st);
}

static inline void put_u32(unsigned char *p, uint32_t v) {
    p[0] = v & 0xFF; p[1] = (v >> 8) & 0xFF; p[2] = (v >> 16) & 0xFF; p[3] = (v >> 24) & 0xFF;
}
static inline uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static PyObject *transition_tuple(const unsigned char *p) {
    double ts;
    memcpy(&ts, p, 8);   /* little-endian machines only: checked at import */
    int16_t flags = (int16_t)(p[12] | (p[13] << 8));
    return Py_BuildValue("(diiiiikkk)", ts, p[8], p[9], p[10], p[11], (int)flags, (unsigned long)get_u32(p + 14),
                         (unsigned long)get_u32(p + 18), (unsigned long)get_u32(p + 22));
}

static PyObject *conn_get_transitions_kept(ConnObject *self, void *c) { return PyLong_FromLong(self->log_n); }

static PyObject *conn_get_transitions(ConnObject *self, void *c) {
    PyObject *out = PyList_New(self->log_n);
    if (out == NULL)
        return NULL;
    for (int i = 0; i < self->log_n; i++) {
        PyObject *entry = transition_tuple(self->log + (size_t)i * TRANSITION_SIZE);
        if (entry == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, entry);
    }
    return out;
}

/* Append one transition to the packed log (capped: the handshake's first entries are kept, then the newest) and
 * return it as a tuple. */
static PyObject *record(ConnObject *conn, double ts, int side, int old, int new_state, int direction, int flags,
                        uint32_t seq, uint32_t ack, uint32_t length) {
    if (conn->log_n >= HISTORY_CAP) {
        size_t start = (size_t)HISTORY_HEAD * TRANSITION_SIZE;
        memmove(conn->log + start, conn->log + start + TRANSITION_SIZE,
                (size_t)conn->log_n * TRANSITION_SIZE - start - TRANSITION_SIZE);
        conn->log_n--;
        conn->transitions_dropped++;
    } else {
        unsigned char *grown = PyMem_Realloc(conn->log, ((size_t)conn->log_n + 1) * TRANSITION_SIZE);
        if (grown == NULL)
            return PyErr_NoMemory();
        conn->log = grown;
    }
    unsigned char *p = conn->log + (size_t)conn->log_n * TRANSITION_SIZE;
    conn->log_n++;
    memcpy(p, &ts, 8);
    p[8] = (unsigned char)side;
    p[9] = (unsigned char)old;
    p[10] = (unsigned char)new_state;
    p[11] = (unsigned char)direction;
    p[12] = (unsigned char)(flags & 0xFF);
    p[13] = (unsigned char)((flags >> 8) & 0xFF);
    put_u32(p + 14, seq);
    put_u32(p + 18, ack);
    put_u32(p + 22, length);
    return Py_BuildValue("(diiiiikkk)", ts, side, old, new_state, direction, flags, (unsigned long)seq,
                         (unsigned long)ack, (unsigned long)length);
}

static PyObject *conn_record(ConnObject *self, PyObject *args) {
    double ts;
    int side, old, new_state, direction, flags;
    unsigned long seq, ack, length;
    if (!PyArg_ParseTuple(args, "diiiiikkk", &ts, &side, &old, &new_state, &direction, &flags, &seq, &ack, &length))
        return NULL;
    return record(self, ts, side, old, new_state, direction, flags, (uint32_t)seq, (uint32_t)ack, (uint32_t)length);
}

static PyObject *conn_side(ConnObject *self, PyObject *index) {
    long i = PyLong_AsLong(index);
    if (i == -1 && PyErr_Occurred())
        return NULL;
    return Py_NewRef((PyObject *)(i == 0 ? self->c : self->s));
}

static const char *CONN_FIELDS[] = {
    "c", "s", "last", "midstream", "flipped", "ended", "end_ts", "rst_by", "syn_ts", "synack_ts", "rtt_server",
    "rtt_client", "history", "_log", "transitions_dropped", "suspicious_rst", "odd_rst", "bad_flags",
    "bad_checksum", "deadline", "pooled", NULL,
};

static PyObject *conn_reduce(PyObject *op, PyObject *unused) {
    ConnObject *self = (ConnObject *)op;
    PyObject *state = fields_state(op, CONN_FIELDS);
    if (state == NULL)
        return NULL;
    return Py_BuildValue("(O(LiOOy#iy#id)N)", (PyObject *)Py_TYPE(op), self->id, self->shard, self->key, self->vlan,
                         (const char *)self->c_addr, (Py_ssize_t)self->c_addr_len, (int)self->c_port,
                         (const char *)self->s_addr, (Py_ssize_t)self->s_addr_len, (int)self->s_port, self->first,
                         state);
}

static PyObject *conn_setstate(PyObject *self, PyObject *state) { return fields_restore(self, state, CONN_FIELDS); }

static PyMethodDef conn_methods[] = {
    {"side", (PyCFunction)conn_side, METH_O, "The client's (0) or the server's (1) Side."},
    {"record", (PyCFunction)conn_record, METH_VARARGS,
     "record(ts, side, old, new, direction, flags, seq, ack, length): log one transition, return it."},
    {"__reduce__", conn_reduce, METH_NOARGS, NULL},
    {"__setstate__", conn_setstate, METH_O, NULL},
    {NULL},
};

#define CG(NAME) {#NAME, (getter)conn_get_##NAME, (setter)conn_set_##NAME, NULL, NULL}
static PyGetSetDef conn_getset[] = {
    CG(end_ts), CG(syn_ts), CG(synack_ts), CG(rtt_server), CG(rtt_client), CG(c), CG(s), CG(history),
    {"_log", (getter)conn_get_log, (setter)conn_set_log, NULL, NULL},
    {"c_addr", (getter)conn_get_c_addr, NULL, NULL, NULL},
    {"s_addr", (getter)conn_get_s_addr, NULL, NULL, NULL},
    {"client_state", (getter)conn_get_client_state, NULL, NULL, NULL},
    {"server_state", (getter)conn_get_server_state, NULL, NULL, NULL},
    {"transitions_kept", (getter)conn_get_transitions_kept, NULL,
     "How many transitions the state history holds (transitions_dropped more were dropped past the cap).", NULL},
    {"transitions", (getter)conn_get_transitions, NULL,
     "The state history: (ts, side, from, to, dir, flags, seq, ack, len) per transition, oldest first.", NULL},
    {NULL},
};
#undef CG

#define CM(NAME, TYPE) {#NAME, TYPE, offsetof(ConnObject, NAME), 0, NULL}
#define CR(NAME, TYPE) {#NAME, TYPE, offsetof(ConnObject, NAME), READONLY, NULL}
static PyMemberDef conn_members[] = {
    CR(id, T_LONGLONG), CR(shard, T_INT), CR(key, T_OBJECT), CR(vlan, T_OBJECT), CR(c_port, T_USHORT),
    CR(s_port, T_USHORT), CM(first, T_DOUBLE), CM(last, T_DOUBLE),
    CM(midstream, T_BOOL), CM(flipped, T_BOOL), CM(ended, T_OBJECT), CM(rst_by, T_OBJECT),
    CM(transitions_dropped, T_UINT), CM(suspicious_rst, T_UINT), CM(odd_rst, T_UINT),
    CM(bad_flags, T_UINT), CM(bad_checksum, T_UINT), CM(deadline, T_DOUBLE), CM(pooled, T_BOOL),
    {NULL},
};
#undef CM
#undef CR

static PyTypeObject ConnType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "midstat_tui._core.Connection",
    .tp_doc = "One TCP connection (one incarnation of a 4-tuple + VLAN); the compiled twin of "
              "midstat_tui.tcp.connection.PyConnection.",
    .tp_basicsize = sizeof(ConnObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = conn_new,
    .tp_init = (initproc)conn_init,
    .tp_dealloc = (destructor)conn_dealloc,
    .tp_getset = conn_getset,
    .tp_members = conn_members,
    .tp_methods = conn_methods,
};
/* ---------------------------------------------------------------------------------------------------------------
 * One segment
 * ------------------------------------------------------------------------------------------------------------ */

typedef struct {
    double ts;
    uint32_t seq, ack, payload, ip_len;
    const unsigned char *mac;     /* the sender's link-layer address, mac_len bytes */
    Py_ssize_t mac_len;
    int flags, win, ttl, truncated;
} Seg;

/* ---------------------------------------------------------------------------------------------------------------
 * The packet ring (live): the headers of each connection's last packets, for the flow screen's ladder of a flow
 * opened after the fact. Bounded per connection (ring_max packets; a ring starts at RING_FIRST entries and doubles
 * while it is full for the first time) and in total (ring_budget bytes over all rings: past it a ring does not
 * grow and a new connection gets none). Off (ring_max 0) unless a live session turns it on: a file's flows are
 * read from the file again.
 * ------------------------------------------------------------------------------------------------------------ */

typedef struct {
    double ts;
    uint32_t seq, ack;
    uint32_t payload;             /* payload length; RING_SERVER: sent by the server */
    uint16_t win;                 /* the raw window field */
    uint8_t flags, ttl;
} RingEntry;                      /* 24 bytes */

struct PacketRing {
    uint64_t seen;                /* packets noted, the overwritten ones too */
    uint32_t cap, head;           /* entries held at most; the next one written */
    RingEntry e[];
};

#define RING_FIRST 2
#define RING_SERVER 0x80000000u
static uint32_t ring_max = 0;     /* packets per connection; 0: off */
static size_t ring_budget = 0, ring_used = 0;
static Py_ssize_t ring_count = 0;

static inline size_t ring_size(uint32_t cap) { return sizeof(struct PacketRing) + (size_t)cap * sizeof(RingEntry); }

static void ring_free(ConnObject *conn) {
    if (conn->ring != NULL) {
        ring_used -= ring_size(conn->ring->cap);
        ring_count--;
        PyMem_Free(conn->ring);
        conn->ring = NULL;
    }
}

static void ring_note(ConnObject *conn, const Seg *seg, int from_client) {
    struct PacketRing *r = conn->ring;
    if (r == NULL || (r->seen == r->cap && r->cap < ring_max)) {
        uint32_t cap = r == NULL ? RING_FIRST : r->cap * 2;
        if (cap > ring_max)
            cap = ring_max;
        size_t old = r == NULL ? 0 : ring_size(r->cap), want = ring_size(cap);
        if (ring_used - old + want <= ring_budget) {
            struct PacketRing *grown = PyMem_Realloc(r, want);
            if (grown != NULL) {
                if (r == NULL) {
                    grown->seen = 0;
                    grown->head = 0;
                    ring_count++;
                } else {
                    grown->head = grown->cap;   /* it was full, in order: the next one goes after them */
                }
                grown->cap = cap;
                ring_used += want - old;
                conn->ring = r = grown;
            }
        }
        if (r == NULL)
            return;
    }
    RingEntry *e = &r->e[r->head];
    e->ts = seg->ts;
    e->seq = seg->seq;
    e->ack = seg->ack;
    e->payload = (seg->payload & ~RING_SERVER) | (from_client ? 0 : RING_SERVER);
    e->win = (uint16_t)seg->win;
    e->flags = (uint8_t)seg->flags;
    e->ttl = seg->ttl < 0 ? 0 : (uint8_t)seg->ttl;
    r->seen++;
    if (++r->head == r->cap)
        r->head = 0;
}

static PyObject *py_ring_setup(PyObject *module, PyObject *args) {
    long long packets, budget;
    if (!PyArg_ParseTuple(args, "LL", &packets, &budget))
        return NULL;
    if (packets < 0 || packets > 1000000 || budget < 0) {
        PyErr_SetString(PyExc_ValueError, "ring_setup(packets 0..1000000, budget bytes >= 0)");
        return NULL;
    }
    ring_max = (uint32_t)packets;
    ring_budget = (size_t)budget;
    Py_RETURN_NONE;
}

static PyObject *py_ring_stats(PyObject *module, PyObject *unused) {
    return Py_BuildValue("(knnn)", (unsigned long)ring_max, (Py_ssize_t)ring_budget, (Py_ssize_t)ring_used,
                         ring_count);
}

static PyObject *py_ring_of(PyObject *module, PyObject *conn_obj) {
    if (!PyObject_TypeCheck(conn_obj, &ConnType)) {
        PyErr_SetString(PyExc_TypeError, "ring_of(conn): a compiled Connection");
        return NULL;
    }
    struct PacketRing *r = ((ConnObject *)conn_obj)->ring;
    uint32_t n = r == NULL ? 0 : (r->seen < r->cap ? (uint32_t)r->seen : r->cap);
    PyObject *list = PyList_New(n);
    if (list == NULL)
        return NULL;
    uint32_t at = r == NULL || r->seen < r->cap ? 0 : r->head;   /* the oldest */
    for (uint32_t i = 0; i < n; i++) {
        const RingEntry *e = &r->e[(at + i) % r->cap];
        PyObject *item = Py_BuildValue("(dikkiiiO)", e->ts, (int)e->flags, (unsigned long)e->seq,
                                       (unsigned long)e->ack, (int)e->win, (int)(e->payload & ~RING_SERVER),
                                       (int)e->ttl, (e->payload & RING_SERVER) ? Py_False : Py_True);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return Py_BuildValue("(KN)", (unsigned long long)(r == NULL ? 0 : r->seen), list);
}

typedef struct {
    ConnObject *conn;
    PyObject *changes;            /* list of transition tuples, made at the first one */
    double ts;
    int direction, flags;
    uint32_t seq, ack, length;
} Mover;

static int move(Mover *m, SideObject *side, int index, int new_state) {
    int old = side->state;
    if (old == new_state)
        return 0;
    side->state = new_state;
    side->since = m->ts;
    if (new_state == TIME_WAIT)
        side->tw_since = m->ts;
    PyObject *entry = record(m->conn, m->ts, index, old, new_state, m->direction, m->flags, m->seq, m->ack,
                             m->length);
    if (entry == NULL)
        return -1;
    if (m->changes == NULL && (m->changes = PyList_New(0)) == NULL) {
        Py_DECREF(entry);
        return -1;
    }
    int rc = PyList_Append(m->changes, entry);
    Py_DECREF(entry);
    return rc;
}

#define MOVE(SIDE, INDEX, STATE) do { if (move(&m, SIDE, INDEX, STATE) < 0) goto error; } while (0)

static inline int covers(uint32_t ack, int64_t fin_seq) {
    return fin_seq != NONE && seq_geq(ack, ((uint32_t)fin_seq + 1) & MASK32);
}

static int rst_acceptable(SideObject *sender, SideObject *receiver, const Seg *seg, int64_t expected) {
    if (receiver->state == SYN_SENT)
        return (seg->flags & ACK) && OPT(receiver, isn) != NONE && seg->ack == (((uint32_t)OPT(receiver, isn) + 1) & MASK32);
    if (receiver->state == CLOSED)
        return 1;
    int64_t acked = OPT(receiver, rcv_ack);
    if (expected == NONE && acked == NONE)
        return 1;
    int64_t seq = seg->seq;
    if (seq == expected || seq == acked)
        return 1;
    if (receiver->state == CLOSE_WAIT || receiver->state == LAST_ACK || receiver->state == CLOSING)
        return (expected != NONE && seq == (((uint32_t)expected - 1) & MASK32)) ||
               (acked != NONE && seq == (((uint32_t)acked - 1) & MASK32));
    return 0;
}

static void track_content(SideObject *sender, SideObject *receiver, const Seg *seg, uint32_t seq_end) {
    uint32_t seq = seg->seq;
    int flags = seg->flags;
    int64_t delivered = OPT(sender, delivered);
    if (delivered == NONE || ((flags & SYN) && delivered == seq))
        delivered = (flags & SYN) ? ((seq + 1) & MASK32) : seq;
    if (seg->payload && !seg->truncated && !seq_lt((uint32_t)delivered, seq) && seq_lt((uint32_t)delivered, seq_end))
        delivered = (flags & FIN) ? ((seq_end - 1) & MASK32) : seq_end;
    int64_t fin_seq = OPT(sender, fin_seq);
    if (fin_seq == NONE && (flags & FIN))
        fin_seq = (seq_end - 1) & MASK32;
    if (fin_seq != NONE && delivered == fin_seq)
        delivered = ((uint32_t)fin_seq + 1) & MASK32;
    SET(sender, delivered, delivered);
    if ((flags & ACK) && !(flags & RST) && OPT(receiver, delivered) != NONE) {
        uint32_t missing = (seg->ack - (uint32_t)OPT(receiver, delivered)) & MASK32;
        if (missing > 0 && missing < 0x80000000u) {
            receiver->gaps++;
            receiver->missed += missing;
            SET(receiver, delivered, seg->ack);
        }
    }
}

/* -- Zeek's history letters and endpoint states (zeek.py) ------------------------------------------------------ */

static int z_add(ConnObject *conn, char letter, int is_orig) {
    return hist_append(conn, is_orig ? (char)(letter - 'a' + 'A') : letter);
}

static int z_once(ConnObject *conn, SideObject *side, char letter, int is_orig) {
    unsigned bit = 1u << (strchr(ONCE_LETTERS, letter) - ONCE_LETTERS);
    if (side->z_once & bit)
        return 0;
    side->z_once |= bit;
    return z_add(conn, letter, is_orig);
}

/* a letter recorded again only for a packet with another sequence number than the last one recorded under it */
static int z_per_seq(ConnObject *conn, uint32_t *slot, uint16_t *have, int bit, char letter, uint32_t seq,
                     int is_orig) {
    if (((*have >> bit) & 1) && *slot == seq)
        return 0;
    put_opt(slot, have, bit, seq);
    return z_add(conn, letter, is_orig);
}
#define Z_PER_SEQ(CONN, SIDE, F, LETTER, SEQ, ORIG) \
    z_per_seq(CONN, &(SIDE)->F, &(SIDE)->have, H_##F, LETTER, SEQ, ORIG)

static int z_logarithmic(ConnObject *conn, SideObject *side, char letter, int is_orig) {
    if (side->z_counts == Py_None) {
        PyObject *counts = PyDict_New();
        if (counts == NULL)
            return -1;
        Py_SETREF(side->z_counts, counts);
    }
    PyObject *key = letters[(int)letter];
    PyObject *old = PyDict_GetItemWithError(side->z_counts, key);
    if (old == NULL && PyErr_Occurred())
        return -1;
    long long n = old ? PyLong_AsLongLong(old) + 1 : 1;
    if (n == 0 && PyErr_Occurred())
        return -1;
    PyObject *value = PyLong_FromLongLong(n);
    if (value == NULL || PyDict_SetItem(side->z_counts, key, value) < 0) {
        Py_XDECREF(value);
        return -1;
    }
    Py_DECREF(value);
    while (n % 10 == 0)
        n /= 10;
    return n == 1 ? z_add(conn, letter, is_orig) : 0;
}

static inline void z_set(SideObject *side, int state) {
    side->zprev = side->zstate;
    side->zstate = state;
}

static void z_update_endpoint(ConnObject *conn, SideObject *side, SideObject *peer, int flags, uint32_t length,
                              int is_orig) {
    int syn = flags & SYN, fin = flags & FIN, rst = flags & RST, ack = flags & ACK;
    int state = side->zstate;
    if (state == Z_INACTIVE) {
        if (syn) {
            if (is_orig) {
                z_set(side, ack ? Z_SYN_ACK_SENT : Z_SYN_SENT);
            } else {
                if (peer->zstate == Z_SYN_SENT || peer->zstate == Z_SYN_ACK_SENT)
                    z_set(peer, Z_ESTABLISHED);
                z_set(side, Z_ESTABLISHED);
            }
        }
        if (fin)
            z_set(side, Z_CLOSED);
        if (rst)
            z_set(side, Z_RESET);
        if (side->zstate == Z_INACTIVE) {
            if (!is_orig && length == 0 && conn->c->zstate == Z_SYN_SENT)
                ;  /* an early ACK of the initial SYN does not make a partial connection */
            else if (ack && peer->zstate == Z_ESTABLISHED)
                z_set(side, Z_ESTABLISHED);
            else
                z_set(side, Z_PARTIAL);
        }
    } else if (state == Z_SYN_SENT || state == Z_SYN_ACK_SENT) {
        if (fin)
            z_set(side, Z_CLOSED);
        if (rst)
            z_set(side, Z_RESET);
        else if (!fin && ack && peer->zstate != Z_INACTIVE && peer->zstate != Z_PARTIAL)
            z_set(side, Z_ESTABLISHED);
    } else if (state == Z_ESTABLISHED || state == Z_PARTIAL) {
        if (fin && !rst) {
            z_set(side, Z_CLOSED);
            if (peer->zstate == Z_RESET && peer->zprev == Z_CLOSED)
                z_set(peer, Z_CLOSED);
        }
        if (rst)
            z_set(side, Z_RESET);
    } else if (state == Z_CLOSED) {
        if (rst && peer->zstate != Z_CLOSED)
            z_set(side, Z_RESET);
    }
}

static int z_note_segment(ConnObject *conn, const Seg *seg, int from_client, int retransmitted, int gap_c,
                          int gap_s, int rst_obeyed) {
    SideObject *side = from_client ? conn->c : conn->s;
    SideObject *peer = from_client ? conn->s : conn->c;
    int flags = seg->flags;
    int syn = flags & SYN, fin = flags & FIN, rst = flags & RST, ack = flags & ACK;
    uint32_t length = seg->payload;
    if (syn) {
        if (ack ? Z_PER_SEQ(conn, side, z_h, 'h', seg->seq, from_client)
                : Z_PER_SEQ(conn, side, z_s, 's', seg->seq, from_client))
            return -1;
        if ((fin || rst) && z_once(conn, side, 'q', from_client))
            return -1;
    }
    if (fin && rst && z_once(conn, side, 'i', from_client))
        return -1;
    if (fin && Z_PER_SEQ(conn, side, z_f, 'f', seg->seq, from_client))
        return -1;
    if (rst && Z_PER_SEQ(conn, side, z_r, 'r', seg->seq, from_client))
        return -1;
    if (ack && !(syn || fin || rst) && length == 0 && z_once(conn, side, 'a', from_client))
        return -1;
    if (length && z_once(conn, side, 'd', from_client))
        return -1;
    if (gap_c && z_logarithmic(conn, conn->c, 'g', 1))
        return -1;
    if (gap_s && z_logarithmic(conn, conn->s, 'g', 0))
        return -1;
    if (retransmitted && z_logarithmic(conn, side, 't', from_client))
        return -1;
    if (seg->win == 0 && !(syn || rst) && z_logarithmic(conn, side, 'w', from_client))
        return -1;
    if (rst && !rst_obeyed)
        flags &= ~RST;
    z_update_endpoint(conn, side, peer, flags, length, from_client);
    return 0;
}

/* -- the two endpoint machines (machine.py's apply_segment), then the Zeek view and conn.last -------------------
 * Returns 0 (with *changes_out: NULL, or a new list of the transitions) or -1 with an exception set.
 * *alerts_out gets bit 0 for a new suspicious RST, bit 1 for a new odd RST. */
static int apply(ConnObject *conn, const Seg *seg, int from_client, PyObject **changes_out, int *alerts_out) {
    SideObject *sender, *receiver;
    int s_idx, r_idx;
    if (from_client) {
        sender = conn->c; receiver = conn->s; s_idx = 0; r_idx = 1;
    } else {
        sender = conn->s; receiver = conn->c; s_idx = 1; r_idx = 0;
    }
    double ts = seg->ts;
    int flags = seg->flags;
    int syn = flags & SYN, fin = flags & FIN, rst = flags & RST, has_ack = flags & ACK;
    uint32_t seq = seg->seq, ack = seg->ack, length = seg->payload;
    Mover m = {conn, NULL, ts, from_client ? 0 : 1, flags, seq, ack, length};
    long long retrans_before = sender->retrans, gaps_c = conn->c->gaps, gaps_s = conn->s->gaps;
    long long suspicious_before = conn->suspicious_rst, odd_before = conn->odd_rst;
    if (ring_max)
        ring_note(conn, seg, from_client);

    /* counters, sequence bookkeeping, retransmissions */
    sender->packets++;
    sender->ip_bytes += seg->ip_len;
    sender->payload += length;
    sender->last_ts = ts;
    if (seg->win == 0) {
        if (!(syn || fin || rst)) {
            sender->zero_win++;
            if (isnan(sender->zw_since))
                sender->zw_since = ts;
        }
    } else if (!rst) {
        sender->zw_since = NAN;
    }
    uint32_t seq_end = (seq + length + (syn ? 1 : 0) + (fin ? 1 : 0)) & MASK32;
    int64_t expected = OPT(sender, snd_nxt);
    if (length && expected != NONE && !rst) {
        uint32_t exp = (uint32_t)expected;
        if (seq_lt(seq, exp)) {
            if (sender->gap_open && ts - sender->last_data_ts < REORDER_THRESHOLD) {
                sender->ooo++;
            } else {
                sender->retrans++;
                uint32_t overlap = (exp - seq) & MASK32;
                sender->retrans_bytes += overlap < length ? overlap : length;
            }
            if (!seq_lt(seq_end, exp))
                sender->gap_open = 0;
        } else if (seq_lt(exp, seq)) {
            sender->gap_open = 1;
        }
    }
    if (length)
        sender->last_data_ts = ts;
    if (!rst) {
        sender->ttl = seg->ttl;
        Py_ssize_t n = seg->mac_len < (Py_ssize_t)sizeof(sender->mac) ? seg->mac_len : (Py_ssize_t)sizeof(sender->mac);
        memcpy(sender->mac, seg->mac, n);
        sender->mac_len = (unsigned char)n;
    }
    if (!rst && (expected == NONE || seq_lt((uint32_t)expected, seq_end)))
        SET(sender, snd_nxt, seq_end);
    if (has_ack && (OPT(sender, rcv_ack) == NONE || seq_lt((uint32_t)OPT(sender, rcv_ack), ack))) {
        SET(sender, rcv_ack, ack);
        if (OPT(sender, fin_ack_seq) == NONE && covers(ack, OPT(receiver, fin_seq)))
            SET(sender, fin_ack_seq, seq);
    }
    track_content(sender, receiver, seg, seq_end);

    if (rst) {
        if (sender->ttl != NONE) {
            int other_mac = 0;
            Py_ssize_t have = sender->mac_len;
            if (seg->mac_len && have)
                other_mac = have != seg->mac_len || memcmp(sender->mac, seg->mac, have) != 0;
            if (seg->ttl != sender->ttl || other_mac)
                conn->odd_rst++;
        }
        if (!rst_acceptable(sender, receiver, seg, expected)) {
            conn->suspicious_rst++;
            /* kept in the state history (from = to), so the flow's timeline shows the ignored reset; no event */
            PyObject *ignored = record(conn, ts, r_idx, receiver->state, receiver->state, m.direction, flags, seq,
                                       ack, length);
            if (ignored == NULL)
                goto error;
            Py_DECREF(ignored);
            goto done;
        }
        if (sender->state != CLOSED || receiver->state != CLOSED) {
            PyObject *who = PyUnicode_InternFromString(from_client ? "client" : "server");
            if (who == NULL)
                goto error;
            Py_SETREF(conn->rst_by, who);
        }
        MOVE(sender, s_idx, CLOSED);
        MOVE(receiver, r_idx, CLOSED);
        goto done;
    }

    /* the sender's side */
    int new_fin = 0;
    uint32_t fin_pos = 0;
    if (fin) {
        fin_pos = (seq + length + (syn ? 1 : 0)) & MASK32;
        if (OPT(sender, fin_seq) == NONE) {
            SET(sender, fin_seq, fin_pos);
            new_fin = 1;
        } else if (fin_pos == OPT(sender, fin_seq)) {
            sender->retrans++;
        }
    }
    if (syn) {
        if (!has_ack) {
            if (sender->state == CLOSED) {
                SET(sender, isn, seq);
                MOVE(sender, s_idx, SYN_SENT);
                if (receiver->state == SYN_SENT)
                    MOVE(sender, s_idx, SYN_RCVD);
            } else if ((sender->state == SYN_SENT || sender->state == SYN_RCVD) && seq == OPT(sender, isn)) {
                sender->retrans++;
            }
        } else {
            int first_synack = !sender->synack_sent;
            sender->synack_sent = 1;
            if (sender->state == CLOSED || sender->state == SYN_SENT) {
                if (OPT(sender, isn) == NONE)
                    SET(sender, isn, seq);
                MOVE(sender, s_idx, SYN_RCVD);
            } else if (seq == OPT(sender, isn) && !(first_synack && sender->state == SYN_RCVD)) {
                sender->retrans++;
            }
        }
    } else if (sender->state == SYN_SENT && (has_ack || fin)) {
        MOVE(sender, s_idx, ESTABLISHED);
        if (receiver->state == CLOSED && receiver->packets == 0)
            MOVE(receiver, r_idx, ESTABLISHED);
    }
    if (new_fin) {
        int state = sender->state;
        if (state == ESTABLISHED || state == SYN_RCVD) {
            MOVE(sender, s_idx, FIN_WAIT_1);
        } else if (state == CLOSE_WAIT) {
            int64_t first_ack = OPT(sender, fin_ack_seq);
            int sent_before = first_ack != NONE && seq_lt(fin_pos, (uint32_t)first_ack);
            if (has_ack && covers(ack, OPT(receiver, fin_seq)) && !sent_before)
                MOVE(sender, s_idx, LAST_ACK);
            else
                MOVE(sender, s_idx, CLOSING);
        }
    }

    /* the receiver's side: ACK field first, then SYN, then FIN */
    if (has_ack) {
        int state = receiver->state;
        if (state == SYN_SENT) {
            if (syn && OPT(receiver, isn) != NONE && ack == (((uint32_t)OPT(receiver, isn) + 1) & MASK32))
                MOVE(receiver, r_idx, ESTABLISHED);
        } else if (state == SYN_RCVD) {
            if (OPT(receiver, isn) != NONE && seq_geq(ack, ((uint32_t)OPT(receiver, isn) + 1) & MASK32))
                MOVE(receiver, r_idx, ESTABLISHED);
        } else if (state == FIN_WAIT_1) {
            if (covers(ack, OPT(receiver, fin_seq)))
                MOVE(receiver, r_idx, FIN_WAIT_2);
        } else if (state == CLOSING) {
            if (covers(ack, OPT(receiver, fin_seq)))
                MOVE(receiver, r_idx, TIME_WAIT);
        } else if (state == LAST_ACK) {
            if (covers(ack, OPT(receiver, fin_seq)))
                MOVE(receiver, r_idx, CLOSED);
        }
    } else if (syn && receiver->state == SYN_SENT) {
        MOVE(receiver, r_idx, SYN_RCVD);
    }
    if (new_fin) {
        int state = receiver->state;
        if (state == ESTABLISHED || state == SYN_RCVD)
            MOVE(receiver, r_idx, CLOSE_WAIT);
        else if (state == FIN_WAIT_1)
            MOVE(receiver, r_idx, CLOSING);
        else if (state == FIN_WAIT_2)
            MOVE(receiver, r_idx, TIME_WAIT);
    }

    /* handshake RTT legs */
    if (syn) {
        if (from_client && !has_ack) {
            if (isnan(conn->synack_ts))
                conn->syn_ts = ts;
        } else if (!from_client && has_ack && isnan(conn->synack_ts) && OPT(conn->c, isn) != NONE &&
                   ack == (((uint32_t)OPT(conn->c, isn) + 1) & MASK32)) {
            conn->synack_ts = ts;
            if (!isnan(conn->syn_ts))
                conn->rtt_server = ts - conn->syn_ts;
        }
    } else if (from_client && has_ack && isnan(conn->rtt_client) && !isnan(conn->synack_ts) &&
               OPT(conn->s, isn) != NONE && ack == (((uint32_t)OPT(conn->s, isn) + 1) & MASK32)) {
        conn->rtt_client = ts - conn->synack_ts;
    }

done:
    conn->last = ts;
    if (z_note_segment(conn, seg, from_client, sender->retrans > retrans_before && length > 0,
                       conn->c->gaps > gaps_c, conn->s->gaps > gaps_s, conn->suspicious_rst == suspicious_before) < 0)
        goto error;
    *changes_out = m.changes;
    *alerts_out = (conn->suspicious_rst > suspicious_before ? 1 : 0) | (conn->odd_rst > odd_before ? 2 : 0);
    return 0;
error:
    Py_XDECREF(m.changes);
    return -1;
}

/* -- apply(conn, seg, from_client) for the Python tracker -------------------------------------------------------- */

static PyObject *s_ts, *s_flags, *s_seq, *s_ack, *s_win, *s_payload, *s_ip_len, *s_ttl, *s_mac, *s_truncated;

static int get_long(PyObject *obj, PyObject *name, long long *out) {
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL)
        return -1;
    *out = PyLong_AsLongLong(v);
    Py_DECREF(v);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *py_apply(PyObject *module, PyObject *args) {
    PyObject *conn_obj, *seg_obj;
    int from_client;
    if (!PyArg_ParseTuple(args, "O!Op", &ConnType, &conn_obj, &seg_obj, &from_client))
        return NULL;
    Seg seg;
    long long v[8];
    PyObject *names[8] = {s_flags, s_seq, s_ack, s_win, s_payload, s_ip_len, s_ttl, s_truncated};
    for (int i = 0; i < 8; i++)
        if (get_long(seg_obj, names[i], &v[i]) < 0)
            return NULL;
    PyObject *ts = PyObject_GetAttr(seg_obj, s_ts);
    if (ts == NULL)
        return NULL;
    seg.ts = PyFloat_AsDouble(ts);
    Py_DECREF(ts);
    if (seg.ts == -1.0 && PyErr_Occurred())
        return NULL;
    seg.flags = (int)v[0];
    seg.seq = (uint32_t)v[1];
    seg.ack = (uint32_t)v[2];
    seg.win = (int)v[3];
    seg.payload = (uint32_t)v[4];
    seg.ip_len = (uint32_t)v[5];
    seg.ttl = (int)v[6];
    seg.truncated = v[7] != 0;
    PyObject *mac = PyObject_GetAttr(seg_obj, s_mac);
    if (mac == NULL)
        return NULL;
    if (!PyBytes_Check(mac)) {
        Py_DECREF(mac);
        PyErr_SetString(PyExc_TypeError, "Segment.mac must be bytes");
        return NULL;
    }
    seg.mac = (const unsigned char *)PyBytes_AS_STRING(mac);
    seg.mac_len = PyBytes_GET_SIZE(mac);
    PyObject *changes = NULL;
    int alerts = 0;
    int rc = apply((ConnObject *)conn_obj, &seg, from_client, &changes, &alerts);
    Py_DECREF(mac);
    if (rc < 0)
        return NULL;
    if (changes == NULL)
        return PyList_New(0);
    return changes;
}

/* ---------------------------------------------------------------------------------------------------------------
 * The packet loop
 * ------------------------------------------------------------------------------------------------------------ */

static inline uint16_t be16(const unsigned char *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* The one's-complement sum test of checksum.py: the bytes, read as 16-bit big-endian words (a trailing odd byte
 * padded with zero), sum to 0 modulo 0xFFFF. sum16 is that sum for a part of the bytes. */
static uint64_t sum16(const unsigned char *p, Py_ssize_t n) {
    uint64_t sum = 0;
    Py_ssize_t i = 0;
    for (; i + 1 < n; i += 2)
        sum += ((uint32_t)p[i] << 8) | p[i + 1];
    if (i < n)
        sum += (uint32_t)p[i] << 8;
    return sum;
}

/* The same sum modulo 0xFFFF for a long run of bytes, four at a time. Since 2^16 = 1 (mod 0xFFFF), a 32-bit word
 * is its two 16-bit halves' sum; read little-endian, the halves are byte-swapped words, whose sum is the
 * big-endian one divided by 256 (mod 0xFFFF): so the big-endian sum is 256 times it. */
static uint64_t sum16_fast(const unsigned char *p, Py_ssize_t n) {
    uint64_t sum = 0, more = 0;
    Py_ssize_t i = 0;
    /* sixteen bytes a turn, as four 32-bit words in two sums (each word below 2^32: no overflow for any frame) */
    for (; i + 16 <= n; i += 16) {
        uint64_t a, b;
        memcpy(&a, p + i, 8);
        memcpy(&b, p + i + 8, 8);
        sum += (a & 0xFFFFFFFFu) + (a >> 32);
        more += (b & 0xFFFFFFFFu) + (b >> 32);
    }
    sum += more;
    for (; i + 4 <= n; i += 4) {
        uint32_t word;
        memcpy(&word, p + i, 4);
        sum += word;          /* little-endian machines only: checked at import */
    }
    for (; i + 1 < n; i += 2)
        sum += (uint32_t)p[i] | ((uint32_t)p[i + 1] << 8);
    if (i < n)
        sum += p[i];
    return (sum % 0xFFFF) * 256;
}

typedef struct {
    Seg seg;
    const unsigned char *src, *dst;
    int addr_len;
    uint16_t sport, dport;
    uint16_t vlan[2];
    int n_vlan;
    int csum;                     /* 1 right, 0 wrong, -1 not checked */
    Py_ssize_t payload_at;        /* where the TCP payload starts in the frame */
    PyObject *key;                /* borrowed: the flow key, while the packet is handled */
} Frame;

enum { DLT_EN10MB = 1, DLT_LINUX_SLL = 113, DLT_LINUX_SLL2 = 276 };

/* 1 when the frame is the plain shape, 0 when it is anything else (left to the Python decoder). Ethernet as
 * fastpath.decode_ethernet; Linux cooked captures (SLL, SLL2: `tcpdump -i any`) as frame.py's dpkt path reads them,
 * the link-layer address being the header's, at most 8 bytes; the IP and TCP headers alike for all three. */
static int decode_frame(int dlt, const unsigned char *f, Py_ssize_t size, int verify, Frame *out) {
    unsigned etype;
    Py_ssize_t off;
    Seg *seg = &out->seg;
    out->n_vlan = 0;
    if (dlt == DLT_EN10MB) {
        if (size < 54)
            return 0;
        etype = be16(f + 12);
        off = 14;
        if (etype == 0x8100 || etype == 0x88A8 || etype == 0x9100) {
            unsigned tci = be16(f + 14);
            etype = be16(f + 16);
            off = 18;
            if (etype == 0x8100) {
                unsigned tci2 = be16(f + 18);
                etype = be16(f + 20);
                off = 22;
                out->vlan[0] = tci & 0x0FFF;
                out->vlan[1] = tci2 & 0x0FFF;
                out->n_vlan = 2;
            } else {
                out->vlan[0] = tci & 0x0FFF;
                out->n_vlan = 1;
            }
            if (etype == 0x8100 || etype == 0x88A8 || etype == 0x9100)
                return 0;
        }
        seg->mac = f + 6;
        seg->mac_len = 6;
    } else if (dlt == DLT_LINUX_SLL) {
        /* packet type, ARPHRD type, address length, 8 address bytes, protocol */
        if (size < 16)
            return 0;
        etype = be16(f + 14);
        off = 16;
        seg->mac = f + 6;
        seg->mac_len = f[5] < 8 ? f[5] : 8;
    } else if (dlt == DLT_LINUX_SLL2) {
        /* protocol, reserved, interface index, ARPHRD type, packet type, address length, 8 address bytes */
        if (size < 20)
            return 0;
        etype = be16(f);
        off = 20;
        seg->mac = f + 12;
        seg->mac_len = f[11] < 8 ? f[11] : 8;
    } else {
        return 0;
    }
    const unsigned char *tcp;
    Py_ssize_t end;
    uint32_t hdr_len;
    uint64_t pseudo;
    if (etype == 0x0800) {
        if (size < off + 40 || f[off] != 0x45)
            return 0;
        const unsigned char *ip = f + off;
        uint32_t ip_len = be16(ip + 2);
        unsigned frag = be16(ip + 6);
        if (ip[9] != 6 || (frag & 0x3FFF) || ip_len < 40)
            return 0;
        tcp = ip + 20;
        hdr_len = (tcp[12] >> 4) << 2;
        if (hdr_len < 20 || (int64_t)ip_len - 20 - hdr_len < 0 || size < off + 20 + (Py_ssize_t)hdr_len)
            return 0;
        seg->payload = ip_len - 20 - hdr_len;
        seg->ip_len = ip_len;
        seg->ttl = ip[8];
        end = off + ip_len;
        out->src = ip + 12;
        out->dst = ip + 16;
        out->addr_len = 4;
        pseudo = sum16(ip + 12, 8) + 6 + (ip_len - 20);
    } else if (etype == 0x86DD) {
        if (size < off + 60 || (f[off] >> 4) != 6)
            return 0;
        const unsigned char *ip = f + off;
        uint32_t plen = be16(ip + 4);
        if (ip[6] != 6 || plen < 20)
            return 0;
        tcp = ip + 40;
        hdr_len = (tcp[12] >> 4) << 2;
        if (hdr_len < 20 || (int64_t)plen - hdr_len < 0 || size < off + 40 + (Py_ssize_t)hdr_len)
            return 0;
        seg->payload = plen - hdr_len;
        seg->ip_len = 40 + plen;
        seg->ttl = ip[7];
        end = off + 40 + plen;
        out->src = ip + 8;
        out->dst = ip + 24;
        out->addr_len = 16;
        /* the pseudo-header as checksum.py builds it: addresses, then "!IxxxB" % (plen, 6) */
        pseudo = sum16(ip + 8, 32) + (plen >> 16) + (plen & 0xFFFF) + 6;
    } else {
        return 0;
    }
    out->sport = be16(tcp);
    out->dport = be16(tcp + 2);
    out->payload_at = (tcp - f) + hdr_len;
    seg->seq = be32(tcp + 4);
    seg->ack = be32(tcp + 8);
    seg->flags = tcp[13];
    seg->win = be16(tcp + 14);
    seg->truncated = size < end;
    out->csum = -1;
    if (verify && !seg->truncated)
        out->csum = (pseudo + sum16_fast(tcp, end - (tcp - f))) % 0xFFFF == 0;
    return 1;
}

/* decode_frame(ts, frame, dlt, verify) -> the fields of the Segment the Python decoder makes, or None: what the
 * packet loop reads of a frame, for the differential tests against the Python decoders. */
static PyObject *py_decode_frame(PyObject *module, PyObject *args) {
    double ts;
    Py_buffer frame;
    int dlt, verify;
    if (!PyArg_ParseTuple(args, "dy*ip", &ts, &frame, &dlt, &verify))
        return NULL;
    Frame fr;
    PyObject *out;
    if (!decode_frame(dlt, frame.buf, frame.len, verify, &fr)) {
        out = Py_NewRef(Py_None);
    } else {
        PyObject *vlan = fr.n_vlan == 2 ? Py_BuildValue("(ii)", fr.vlan[0], fr.vlan[1])
                         : fr.n_vlan == 1 ? Py_BuildValue("(i)", fr.vlan[0]) : PyTuple_New(0);
        PyObject *csum = fr.csum < 0 ? Py_None : fr.csum ? Py_True : Py_False;
        out = vlan == NULL ? NULL : Py_BuildValue(
            "(dNy#y#iikkiikkiOOy#)", ts, vlan, fr.src, (Py_ssize_t)fr.addr_len, fr.dst, (Py_ssize_t)fr.addr_len,
            fr.sport, fr.dport, (unsigned long)fr.seg.seq, (unsigned long)fr.seg.ack, fr.seg.flags, fr.seg.win,
            (unsigned long)fr.seg.payload, (unsigned long)fr.seg.ip_len, fr.seg.ttl, csum,
            fr.seg.truncated ? Py_True : Py_False, fr.seg.mac, fr.seg.mac_len);
    }
    PyBuffer_Release(&frame);
    return out;
}

/* ---------------------------------------------------------------------------------------------------------------
 * The flow scanner (the ladder of a file's flow): the records of an uncompressed pcap or pcapng file, held in
 * memory (an mmap), whose frame may be one tuple's packet, as (ts, frame). A pre-filter like flow_packets.flow_bpf:
 * the tuple's plain TCP frames (either direction, any VLAN), every ICMP frame, and every frame of a shape read here
 * only in part (IP options aside, IPv6 extension headers, another ethertype but ARP); the decoder decides.
 * Timestamps as libpcap hands them over (microseconds): sec + usec * 1e-6, on the file's clock (a record dated
 * before one read earlier in the file is dated at that one's time, as FileSource dates it for the tracker).
 * ------------------------------------------------------------------------------------------------------------ */

static inline uint32_t rd32(const unsigned char *p, int swap) {
    uint32_t v;
    memcpy(&v, p, 4);
    return swap ? __builtin_bswap32(v) : v;
}
static inline uint16_t rd16(const unsigned char *p, int swap) {
    uint16_t v;
    memcpy(&v, p, 2);
    return swap ? __builtin_bswap16(v) : v;
}

typedef struct {
    int dlt, alen;
    unsigned char a[16], b[16];
    uint16_t ap, bp;
    double first, last;
} ScanWant;

static inline int ends_match(const unsigned char *src, const unsigned char *dst, uint16_t sp, uint16_t dp,
                             const ScanWant *w) {
    return (sp == w->ap && dp == w->bp && memcmp(src, w->a, w->alen) == 0 && memcmp(dst, w->b, w->alen) == 0) ||
           (sp == w->bp && dp == w->ap && memcmp(src, w->b, w->alen) == 0 && memcmp(dst, w->a, w->alen) == 0);
}

static int scan_keep(const ScanWant *w, const unsigned char *f, Py_ssize_t size) {
    Frame fr;
    if (decode_frame(w->dlt, f, size, 0, &fr))
        return fr.addr_len == w->alen && ends_match(fr.src, fr.dst, fr.sport, fr.dport, w);
    unsigned etype;
    Py_ssize_t off;
    if (w->dlt == DLT_EN10MB) {
        if (size < 14)
            return 0;
        etype = be16(f + 12);
        off = 14;
        while ((etype == 0x8100 || etype == 0x88A8 || etype == 0x9100) && size >= off + 4) {
            etype = be16(f + off + 2);
            off += 4;
        }
    } else if (w->dlt == DLT_LINUX_SLL) {
        if (size < 16)
            return 0;
        etype = be16(f + 14);
        off = 16;
    } else {
        if (size < 20)
            return 0;
        etype = be16(f);
        off = 20;
    }
    if (etype == 0x0806)
        return 0;
    if (etype == 0x0800 && size >= off + 20) {
        const unsigned char *ip = f + off;
        int proto = ip[9], ihl = (ip[0] & 15) * 4;
        if (proto == 1)
            return 1;
        if (proto != 6)
            return 0;
        if (w->alen != 4)
            return 0;
        if ((be16(ip + 6) & 0x1FFF) || size < off + ihl + 4)
            return 1;   /* a fragment, or cut short: the decoder decides */
        return ends_match(ip + 12, ip + 16, be16(ip + ihl), be16(ip + ihl + 2), w);
    }
    if (etype == 0x86DD && size >= off + 40) {
        const unsigned char *ip = f + off;
        int next = ip[6];
        if (next == 58 || next == 0 || next == 43 || next == 44 || next == 60 || next == 51 || next == 50)
            return 1;   /* ICMPv6, or extension headers */
        if (next != 6)
            return 0;
        if (w->alen != 16 || size < off + 44)
            return w->alen == 16;
        return ends_match(ip + 8, ip + 24, be16(ip + 40), be16(ip + 42), w);
    }
    return 1;
}

/* A record's time on the file's clock (capture/clock.py's PacketClock, over every record of the file): its own, or,
 * dated before one read earlier (whichever connection's), that one's; `*latest` moves past it. */
static inline double scan_date(long long *latest, uint64_t sec, uint64_t usec) {
    long long micro = (long long)sec * 1000000 + (long long)usec;
    if (micro >= *latest) {
        *latest = micro;
        return (double)sec + (double)usec * 1e-6;
    }
    return (double)(*latest / 1000000) + (double)(*latest % 1000000) * 1e-6;
}

static int scan_add(PyObject *out, double ts, const unsigned char *f, Py_ssize_t size) {
    PyObject *item = Py_BuildValue("(dy#)", ts, (const char *)f, size);
    if (item == NULL)
        return -1;
    int rc = PyList_Append(out, item);
    Py_DECREF(item);
    return rc;
}

/* scan_flow(buffer, dlt, a_addr, a_port, b_addr, b_port, first[, last]) -> [(ts, frame), ...], or None when the
 * file is not a shape this reads (the caller reads it through libpcap instead). Records dated before `first` are
 * left out; the scan ends at the first one dated after `last` (the file's clock never goes back). */
static PyObject *py_scan_flow(PyObject *module, PyObject *args) {
    Py_buffer buf, a, b;
    ScanWant w;
    int ap, bp;
    w.last = INFINITY;
    if (!PyArg_ParseTuple(args, "y*iy*iy*id|d", &buf, &w.dlt, &a, &ap, &b, &bp, &w.first, &w.last))
        return NULL;
    PyObject *out = NULL;
    if (a.len != b.len || (a.len != 4 && a.len != 16) ||
        (w.dlt != DLT_EN10MB && w.dlt != DLT_LINUX_SLL && w.dlt != DLT_LINUX_SLL2)) {
        out = Py_NewRef(Py_None);
        goto done;
    }
    w.alen = (int)a.len;
    memcpy(w.a, a.buf, a.len);
    memcpy(w.b, b.buf, b.len);
    w.ap = (uint16_t)ap;
    w.bp = (uint16_t)bp;
    const unsigned char *p = buf.buf;
    Py_ssize_t n = buf.len;
    if (n < 24) {
        out = Py_NewRef(Py_None);
        goto done;
    }
    uint32_t magic;
    memcpy(&magic, p, 4);
    long long latest = -1;   /* the file's clock: the latest time read (whole microseconds) */
    if ((out = PyList_New(0)) == NULL)
        goto done;
    if (magic == 0xA1B2C3D4u || magic == 0xD4C3B2A1u || magic == 0xA1B23C4Du || magic == 0x4D3CB2A1u) {
        int swap = magic == 0xD4C3B2A1u || magic == 0x4D3CB2A1u;
        int nano = magic == 0xA1B23C4Du || magic == 0x4D3CB2A1u;
        if ((int)(rd32(p + 20, swap) & 0x0FFFFFFF) != w.dlt)
            goto fallback;
        Py_ssize_t at = 24;
        while (at + 16 <= n) {
            uint32_t sec = rd32(p + at, swap), frac = rd32(p + at + 4, swap), caplen = rd32(p + at + 8, swap);
            if (caplen > (uint32_t)(n - at - 16))
                break;  /* cut off: as libpcap, the packets before it */
            const unsigned char *f = p + at + 16;
            at += 16 + (Py_ssize_t)caplen;
            double ts = scan_date(&latest, sec, nano ? frac / 1000 : frac);
            if (ts > w.last)
                break;  /* the clock only goes on: every record from here is dated after `last` */
            if (ts < w.first || !scan_keep(&w, f, caplen))
                continue;
            if (scan_add(out, ts, f, caplen) < 0)
                goto fail;
        }
        goto done;
    }
    if (magic == 0x0A0D0D0Au) {
        int swap = 0;
        uint64_t units[64];
        int n_if = 0;
        Py_ssize_t at = 0;
        while (at + 12 <= n) {
            uint32_t type = rd32(p + at, swap);
            if (type == 0x0A0D0D0Au) {
                uint32_t bom;
                memcpy(&bom, p + at + 8, 4);
                if (bom == 0x1A2B3C4Du)
                    swap = 0;
                else if (bom == 0x4D3C2B1Au)
                    swap = 1;
                else
                    goto fallback;
                n_if = 0;   /* a new section: its own interfaces */
            }
            uint32_t len = rd32(p + at + 4, swap);
            if (len < 12 || len % 4 || len > (uint64_t)(n - at))
                break;
            const unsigned char *body = p + at + 8;
            Py_ssize_t body_len = (Py_ssize_t)len - 12;
            if (type == 1) {   /* interface description */
                if (body_len < 8 || n_if == 64 || rd16(body, swap) != w.dlt)
                    goto fallback;
                uint64_t per_sec = 1000000;
                Py_ssize_t o = 8;
                while (o + 4 <= body_len) {
                    uint16_t code = rd16(body + o, swap), olen = rd16(body + o + 2, swap);
                    if (code == 0)
                        break;
                    if (code == 14)
                        goto fallback;   /* if_tsoffset: libpcap's business */
                    if (code == 9 && olen >= 1 && o + 5 <= body_len) {
                        unsigned r = body[o + 4];
                        per_sec = 1;
                        for (unsigned k = 0; k < (r & 0x7F) && per_sec < (1ull << 60); k++)
                            per_sec *= (r & 0x80) ? 2 : 10;
                    }
                    o += 4 + ((olen + 3) & ~3);
                }
                units[n_if++] = per_sec;
            } else if (type == 6) {   /* enhanced packet */
                if (body_len < 20)
                    goto fallback;
                uint32_t iface = rd32(body, swap), caplen = rd32(body + 12, swap);
                if (iface >= (uint32_t)n_if || caplen > (uint32_t)(body_len - 20))
                    goto fallback;
                uint64_t t = ((uint64_t)rd32(body + 4, swap) << 32) | rd32(body + 8, swap), per = units[iface];
                uint64_t sec = t / per, frac = t % per;
                /* to microseconds as libpcap does: a decimal resolution by its factor, a binary one through *1e6 */
                uint64_t usec = per % 1000000 == 0 ? frac / (per / 1000000)
                                : 1000000 % per == 0 ? frac * (1000000 / per)
                                : (uint64_t)((unsigned __int128)frac * 1000000 / per);
                double ts = scan_date(&latest, sec, usec);
                if (ts > w.last)
                    break;
                if (ts >= w.first && scan_keep(&w, body + 20, caplen) && scan_add(out, ts, body + 20, caplen) < 0)
                    goto fail;
            } else if (type == 2 || type == 3) {
                goto fallback;   /* the old packet block, the simple one: libpcap's business */
            }
            at += len;
        }
        goto done;
    }
fallback:
    Py_XSETREF(out, Py_NewRef(Py_None));
    goto done;
fail:
    Py_CLEAR(out);
done:
    PyBuffer_Release(&buf);
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    return out;
}

/* Tracker.key_of: the lower endpoint (address, then port) first, then the VLAN ids and their count. */
static PyObject *flow_key(const Frame *fr) {
    unsigned char a[18], b[18], key[36 + 5];
    int n = fr->addr_len;
    memcpy(a, fr->src, n);
    a[n] = fr->sport >> 8;
    a[n + 1] = fr->sport & 0xFF;
    memcpy(b, fr->dst, n);
    b[n] = fr->dport >> 8;
    b[n + 1] = fr->dport & 0xFF;
    int half = n + 2;
    if (memcmp(a, b, half) <= 0) {
        memcpy(key, a, half);
        memcpy(key + half, b, half);
    } else {
        memcpy(key, b, half);
        memcpy(key + half, a, half);
    }
    int len = 2 * half;
    if (fr->n_vlan) {
        for (int i = 0; i < fr->n_vlan; i++) {
            key[len++] = fr->vlan[i] >> 8;
            key[len++] = fr->vlan[i] & 0xFF;
        }
        key[len++] = (unsigned char)fr->n_vlan;
    }
    return PyBytes_FromStringAndSize((const char *)key, len);
}

/* pick_keys(batch, keys, dlt) -> (hits, others)   (live --write: engine/live_write.py)
 *
 * Over a list of (ts, frame) of link type `dlt`: `hits`, (index, key) of the TCP frames whose tuple's key
 * (Tracker.key_of) is in the dict `keys`; `others`, the indices of the frames this decoder does not read as TCP
 * (ICMP errors, MPLS, IPv6 extension headers, UDP...: the Python decoder's). No checksum is checked: a damaged
 * segment is its tuple's too. */
static PyObject *py_pick_keys(PyObject *module, PyObject *args) {
    PyObject *batch, *keys;
    int dlt;
    if (!PyArg_ParseTuple(args, "O!O!i", &PyList_Type, &batch, &PyDict_Type, &keys, &dlt))
        return NULL;
    PyObject *hits = PyList_New(0), *others = PyList_New(0);
    if (hits == NULL || others == NULL)
        goto fail;
    Py_ssize_t n = PyList_GET_SIZE(batch);
    Frame fr;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(batch, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 || !PyBytes_Check(PyTuple_GET_ITEM(item, 1))) {
            PyErr_SetString(PyExc_TypeError, "pick_keys: batch items must be (ts, frame)");
            goto fail;
        }
        PyObject *frame = PyTuple_GET_ITEM(item, 1);
        PyObject *list = others;
        if (decode_frame(dlt, (const unsigned char *)PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame), 0, &fr)) {
            PyObject *key = flow_key(&fr);
            if (key == NULL)
                goto fail;
            int found = PyDict_Contains(keys, key);
            Py_DECREF(key);
            if (found < 0)
                goto fail;
            if (!found)
                continue;
            PyObject *hit = Py_BuildValue("(nN)", i, flow_key(&fr));
            if (hit == NULL || PyList_Append(hits, hit) < 0) {
                Py_XDECREF(hit);
                goto fail;
            }
            Py_DECREF(hit);
            continue;
        }
        PyObject *index = PyLong_FromSsize_t(i);
        if (index == NULL || PyList_Append(list, index) < 0) {
            Py_XDECREF(index);
            goto fail;
        }
        Py_DECREF(index);
    }
    return Py_BuildValue("(NN)", hits, others);
fail:
    Py_XDECREF(hits);
    Py_XDECREF(others);
    return NULL;
}

enum { STOP_END, STOP_SLOW, STOP_TIME, STOP_CHANGED };

/* A batch of packets read by the capture file reader (`Reader`, below): each packet's time, and where its frame lies
 * in the block of the file it was read into. The packet loop (`run`) takes it as it takes a list of (ts, frame). */
enum { READ_ON = 0, READ_END = 1, READ_HANDOVER = 2 };
enum { F_UNPLACED = 1, F_LATE = 2 };

typedef struct {
    double ts;
    uint32_t off, len;
    uint32_t flags;
} FrameEntry;

typedef struct {
    PyObject_HEAD
    PyObject *block;              /* the bytes object the frames lie in */
    Py_ssize_t n;
    FrameEntry *e;
} FramesObject;

static PyTypeObject FramesType;

static inline const unsigned char *frames_base(const FramesObject *fr) {
    return (const unsigned char *)PyBytes_AS_STRING(fr->block);
}

/* ---------------------------------------------------------------------------------------------------------------
 * The seam: tcp/seam.py's CoreState is all the loop sees of a tracker (docs/compiled-core.md). Its public
 * attributes are read once per call; the structures (table, timers, handshakes, touched) are the same objects the
 * tracker uses. The rules on them (live_deadline, schedule, admit, tidy_due) are written here once for the
 * compiled engine, which uses them on its Python path too (tracker.py takes them from this module).
 * ------------------------------------------------------------------------------------------------------------ */

static PyObject *s_table, *s_timers, *s_handshakes, *s_touched, *s_next_id, *s_latest, *s_events, *s_max_conns,
    *s_shard, *s_shard_count, *s_tw_hold, *s_idle, *s_timer_slack, *s_pool_slack, *s_make_room, *s_append;
static PyObject *heappush;        /* _heapq.heappush */

enum { TIDY_TIMERS = 1, TIDY_POOL = 2 };  /* seam.TIDY_TIMERS, seam.TIDY_POOL */

typedef struct {
    PyObject *state;              /* the CoreState (borrowed) */
    PyObject *table, *timers, *handshakes, *touched, *make_room;      /* new references */
    long long next_id, max_conns, shard, shard_count, timer_slack, pool_slack;
    double latest, tw_hold, idle[N_STATES];
    int events;
} Core;

static void core_release(Core *k) {
    Py_CLEAR(k->table);
    Py_CLEAR(k->timers);
    Py_CLEAR(k->handshakes);
    Py_CLEAR(k->touched);
    Py_CLEAR(k->make_room);
}

static int core_ll(PyObject *state, PyObject *name, long long *out) {
    PyObject *v = PyObject_GetAttr(state, name);
    if (v == NULL)
        return -1;
    *out = PyLong_AsLongLong(v);
    Py_DECREF(v);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static int core_double(PyObject *state, PyObject *name, double *out) {
    PyObject *v = PyObject_GetAttr(state, name);
    if (v == NULL)
        return -1;
    *out = PyFloat_AsDouble(v);
    Py_DECREF(v);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

/* Read the CoreState `state` into `k` (release it with core_release, whatever this returns). */
static int core_load(Core *k, PyObject *state) {
    memset(k, 0, sizeof(*k));
    k->state = state;
    if ((k->table = PyObject_GetAttr(state, s_table)) == NULL || (k->timers = PyObject_GetAttr(state, s_timers)) == NULL
        || (k->handshakes = PyObject_GetAttr(state, s_handshakes)) == NULL
        || (k->touched = PyObject_GetAttr(state, s_touched)) == NULL
        || (k->make_room = PyObject_GetAttr(state, s_make_room)) == NULL)
        return -1;
    if (!PyDict_Check(k->table) || !PyList_Check(k->timers) || (k->touched != Py_None && !PySet_Check(k->touched))) {
        PyErr_SetString(PyExc_TypeError, "CoreState: table must be a dict, timers a list, touched a set or None");
        return -1;
    }
    if (core_ll(state, s_next_id, &k->next_id) < 0 || core_ll(state, s_max_conns, &k->max_conns) < 0 ||
        core_ll(state, s_shard, &k->shard) < 0 || core_ll(state, s_shard_count, &k->shard_count) < 0 ||
        core_ll(state, s_timer_slack, &k->timer_slack) < 0 || core_ll(state, s_pool_slack, &k->pool_slack) < 0 ||
        core_double(state, s_latest, &k->latest) < 0 || core_double(state, s_tw_hold, &k->tw_hold) < 0)
        return -1;
    PyObject *events = PyObject_GetAttr(state, s_events);
    if (events == NULL)
        return -1;
    k->events = PyObject_IsTrue(events);
    Py_DECREF(events);
    if (k->events < 0)
        return -1;
    PyObject *idle = PyObject_GetAttr(state, s_idle);
    if (idle == NULL)
        return -1;
    int ok = PyTuple_Check(idle) && PyTuple_GET_SIZE(idle) == N_STATES;
    for (int st = 0; ok && st < N_STATES; st++) {
        k->idle[st] = PyFloat_AsDouble(PyTuple_GET_ITEM(idle, st));
        ok = !(k->idle[st] == -1.0 && PyErr_Occurred());
    }
    Py_DECREF(idle);
    if (!ok) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "CoreState.idle must be a tuple of one timeout per state");
        return -1;
    }
    return 0;
}

static inline int in_handshake(int state) { return state == SYN_SENT || state == SYN_RCVD || state == CLOSED; }

static double side_done(const Core *k, ConnObject *conn, SideObject *side) {
    if (side->state == TIME_WAIT)
        return (isnan(side->tw_since) || side->tw_since == 0.0 ? conn->last : side->tw_since) + k->tw_hold;
    if (side->state == CLOSED)
        return 0.0;
    return conn->last + (side->state < N_STATES ? k->idle[side->state] : 0.0);
}

/* seam.live_deadline */
static double live_deadline(const Core *k, ConnObject *conn) {
    double a = side_done(k, conn, conn->c), b = side_done(k, conn, conn->s);
    return a > b ? a : b;
}

/* seam.schedule: 1 when both sides are CLOSED (the tracker ends it), else 0 (-1: error). A deadline brought
 * before `*limit` becomes the limit, so that it fires before the first packet at or after it (as it would in
 * Python: `segment` runs the timers due first). */
static int schedule(const Core *k, ConnObject *conn, double *limit) {
    int c = conn->c->state, s = conn->s->state;
    if (c == CLOSED && s == CLOSED)
        return 1;
    if (conn->pooled && !in_handshake(c) && !in_handshake(s))
        conn->pooled = 0;  /* out of the handshake pool (its key there is skipped when it comes up) */
    double deadline = live_deadline(k, conn);
    if (deadline < conn->deadline) {
        conn->deadline = deadline;
        if (limit != NULL && deadline < *limit)
            *limit = deadline;
        PyObject *entry = Py_BuildValue("(dO)", deadline, conn->key);
        if (entry == NULL)
            return -1;
        PyObject *rc = PyObject_CallFunctionObjArgs(heappush, k->timers, entry, NULL);
        Py_DECREF(entry);
        if (rc == NULL)
            return -1;
        Py_DECREF(rc);
    }
    return 0;
}

/* seam.admit */
static int admit(const Core *k, ConnObject *conn) {
    if (PyDict_SetItem(k->table, conn->key, (PyObject *)conn) < 0)
        return -1;
    if (in_handshake(conn->c->state) || in_handshake(conn->s->state)) {
        PyObject *appended = PyObject_CallMethodOneArg(k->handshakes, s_append, conn->key);
        if (appended == NULL)
            return -1;
        Py_DECREF(appended);
        conn->pooled = 1;
    }
    conn->deadline = INFINITY;
    return 0;
}

/* seam.tidy_due, as it will be once `extra` more connections are admitted into the table and the pool (-1: error) */
static int tidy_due(const Core *k, Py_ssize_t extra) {
    Py_ssize_t size = PyDict_GET_SIZE(k->table) + extra;
    Py_ssize_t pooled = PyObject_Length(k->handshakes);
    if (pooled < 0)
        return -1;
    pooled += extra;
    int due = 0;
    if (PyList_GET_SIZE(k->timers) > size + (size >> 1) + k->timer_slack)
        due |= TIDY_TIMERS;
    if (pooled > 2 * size + k->pool_slack)
        due |= TIDY_POOL;
    return due;
}

/* Tracker._new for a pure SYN on a free tuple: room is made first if the table is full (`make_room`: the eviction
 * policy stays in Python); when the heap or the pool is due for tidying the rest is left to Python. Returns 1 with
 * *out the new connection (borrowed from the table), 0 when it is left to Python, -1 on error. */
static int new_connection(Core *k, const Frame *fr, double ts, PyObject **out) {
    if (PyDict_GET_SIZE(k->table) >= k->max_conns) {
        PyObject *when = PyFloat_FromDouble(ts);
        PyObject *r = when ? PyObject_CallOneArg(k->make_room, when) : NULL;
        Py_XDECREF(when);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    /* the tracker tidies right after admitting one when it is due: then the admission is the tracker's */
    int due = tidy_due(k, 1);
    if (due != 0)
        return due < 0 ? -1 : 0;
    PyObject *vlan = PyTuple_New(fr->n_vlan);
    ConnObject *conn = (ConnObject *)conn_new(&ConnType, NULL, NULL);
    PyObject *id_obj = PyLong_FromLongLong(k->next_id + 1);
    int rc = -1;
    if (vlan == NULL || conn == NULL || id_obj == NULL)
        goto done;
    for (int i = 0; i < fr->n_vlan; i++) {
        PyObject *v = PyLong_FromLong(fr->vlan[i]);
        if (v == NULL)
            goto done;
        PyTuple_SET_ITEM(vlan, i, v);
    }
    if (PyObject_SetAttr(k->state, s_next_id, id_obj) < 0)
        goto done;
    k->next_id++;
    conn->id = k->next_id * k->shard_count + k->shard;
    conn->shard = (int)k->shard;
    Py_SETREF(conn->key, Py_NewRef(fr->key));
    Py_SETREF(conn->vlan, Py_NewRef(vlan));
    memcpy(conn->c_addr, fr->src, fr->addr_len);
    memcpy(conn->s_addr, fr->dst, fr->addr_len);
    conn->c_addr_len = conn->s_addr_len = (unsigned char)fr->addr_len;
    conn->c_port = fr->sport;
    conn->s_port = fr->dport;
    conn->first = conn->last = ts;
    if (admit(k, conn) < 0)
        goto done;
    *out = (PyObject *)conn;      /* the table holds it */
    rc = 1;
done:
    Py_XDECREF(vlan);
    Py_XDECREF(id_obj);
    Py_XDECREF(conn);
    return rc;
}

static PyObject *py_live_deadline(PyObject *module, PyObject *args) {
    PyObject *state;
    ConnObject *conn;
    if (!PyArg_ParseTuple(args, "OO!", &state, &ConnType, &conn))
        return NULL;
    Core k;
    PyObject *result = NULL;
    if (core_load(&k, state) == 0)
        result = PyFloat_FromDouble(live_deadline(&k, conn));
    core_release(&k);
    return result;
}

static PyObject *py_schedule(PyObject *module, PyObject *args) {
    PyObject *state;
    ConnObject *conn;
    if (!PyArg_ParseTuple(args, "OO!", &state, &ConnType, &conn))
        return NULL;
    Core k;
    PyObject *result = NULL;
    if (core_load(&k, state) == 0) {
        int rc = schedule(&k, conn, NULL);
        if (rc >= 0)
            result = PyBool_FromLong(rc);
    }
    core_release(&k);
    return result;
}

static PyObject *py_admit(PyObject *module, PyObject *args) {
    PyObject *state;
    ConnObject *conn;
    if (!PyArg_ParseTuple(args, "OO!", &state, &ConnType, &conn))
        return NULL;
    Core k;
    PyObject *result = NULL;
    if (core_load(&k, state) == 0 && admit(&k, conn) == 0)
        result = Py_NewRef(Py_None);
    core_release(&k);
    return result;
}

static PyObject *py_tidy_due(PyObject *module, PyObject *state) {
    Core k;
    PyObject *result = NULL;
    if (core_load(&k, state) == 0) {
        int due = tidy_due(&k, 0);
        if (due >= 0)
            result = PyLong_FromLong(due);
    }
    core_release(&k);
    return result;
}

/* names (engine/names.py): does a client's first data start as a TLS ClientHello or an HTTP/1.x request? */
static int may_name(const unsigned char *p, Py_ssize_t left) {
    static const char methods[][5] = {"GET ", "POST", "HEAD", "PUT ", "DELE", "OPTI", "PATC", "CONN", "TRAC"};
    if (left >= 6 && p[0] == 0x16 && p[1] == 3 && p[5] == 1)
        return 1;
    if (left < 4 || p[0] < 'C' || p[0] > 'T')
        return 0;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (memcmp(p, methods[i], 4) == 0)
            return 1;
    return 0;
}

/* Is the frame's source one of `own` (entries of a length byte, then that many address bytes)? */
static int own_source(const char *own, Py_ssize_t own_len, const Frame *fr) {
    Py_ssize_t at = 0;
    while (own != NULL && at < own_len) {
        int len = (unsigned char)own[at];
        if (len == 0) /* any source: a virtual link, where no stack fills checksums in */
            return 1;
        if (at + 1 + len > own_len)
            return 0;
        if (len == fr->addr_len && memcmp(own + at + 1, fr->src, len) == 0)
            return 1;
        at += 1 + len;
    }
    return 0;
}

/* run(batch, start, limit, core, verify, dlt[, offload_sources[, name_frames]])
 *     -> (reason, index, packets, frame_bytes, suspicious, odd, started, last_ts, conn, changes, states_before,
 *         offloaded)
 *
 * Feeds batch[start:] (a list of (ts, frame) of link type `dlt`) to the connections of a tracker's table, `core`
 * being its tcp/seam.py CoreState, while it can: the packet's timestamp is below `limit` (the next tick or timer),
 * the frame is the plain shape with no bad checksum (but for one sent from an address of `offload_sources`: the
 * capturing host's, whose checksums its NIC fills in after the capture point; `offloaded` counts them, as
 * Tracker.segment does), and it belongs to a live connection (or is a pure SYN on a free tuple, which it admits)
 * and is neither another SYN without ACK nor a flag combination no stack sends, nor dated before the core's
 * `latest` packet time. A packet that moves a state is finished here (`schedule`) unless the core has an event
 * sink or the packet ended the connection. It stops at the first packet it may not take (reason SLOW or TIME:
 * `index` is that packet, not fed), right after a packet whose change Python must finish (CHANGED: `index` is
 * that packet, `changes` its transitions, `states_before` the (client, server) states before it; then
 * Tracker.changed), or at the batch's end (END). The counts are those of the packets fed in this call.
 * With a `name_frames` list, a client's first payload-carrying segment that starts like a TLS ClientHello or an
 * HTTP/1.x request gets (ts, frame, payload offset, server address, client address, client port, server port)
 * appended to it (engine/names.py learns from it). */
/* Flags no stack sends together (SYN with FIN or RST, FIN with RST) or a segment with none of SYN, RST, ACK:
 * Python's, which counts and judges them. */
static inline int bogus_flags(int flags) {
    return ((flags & SYN) && (flags & (FIN | RST))) || ((flags & FIN) && (flags & RST)) || !(flags & (SYN | RST | ACK));
}

/* Whether a frame of `conn`'s tuple comes from its client. */
static inline int is_from_client(const ConnObject *conn, const Frame *fr) {
    return fr->sport == conn->c_port && conn->c_addr_len == fr->addr_len &&
           memcmp(conn->c_addr, fr->src, fr->addr_len) == 0;
}

/* After apply(): a change of states (`*moves` set) when no events were asked for may only move the connection's
 * timer, which schedule() settles here. Returns -1 on an error (moves released), 0 when nothing is left for Python
 * to hear (moves cleared: the loop goes on), 1 when the change is Python's (the loop stops with it). */
static int settle(const Core *k, ConnObject *conn, PyObject **moves, int events, double *limit) {
    if (*moves == NULL)
        return 0;
    if (!events) {
        int rc = schedule(k, conn, limit);
        if (rc <= 0) {
            Py_CLEAR(*moves);
            return rc;
        }
    }
    return 1;
}

/* One packet applied to its connection, as the packet loop (run) and the ladder's replay (flow_run) both take it:
 * its transitions in `*moves` (NULL: none), the counts moved on (`t`), the connection marked touched. -1 on an error
 * (moves released). */
typedef struct {
    long long packets, suspicious, odd;
    double last_ts, floor_ts;
} Tally;

static inline int apply_counted(const Core *k, ConnObject *conn, const Seg *seg, int from_client, double ts,
                                PyObject **moves, Tally *t) {
    int alerts = 0;
    *moves = NULL;
    if (apply(conn, seg, from_client, moves, &alerts) < 0)
        return -1;
    t->floor_ts = ts;
    t->packets++;
    t->suspicious += alerts & 1;
    t->odd += (alerts >> 1) & 1;
    t->last_ts = ts;
    if (k->touched != Py_None && PySet_Add(k->touched, (PyObject *)conn) < 0) {
        Py_CLEAR(*moves);
        return -1;
    }
    return 0;
}

static PyObject *py_run(PyObject *module, PyObject *args) {
    PyObject *batch, *state;
    Py_ssize_t start;
    double limit;
    int verify, dlt;
    const char *own = NULL;       /* offload_sources: entries of one length byte (4 or 16), then the address */
    Py_ssize_t own_len = 0;
    PyObject *name_frames = NULL; /* names: where a client's first payload that may name its server goes */
    if (!PyArg_ParseTuple(args, "OndOpi|y#O!", &batch, &start, &limit, &state, &verify, &dlt, &own, &own_len,
                          &PyList_Type, &name_frames))
        return NULL;
    /* a list of (ts, frame) tuples, or a batch of frames lying in a file's block (Reader) */
    FramesObject *frames = PyObject_TypeCheck(batch, &FramesType) ? (FramesObject *)batch : NULL;
    if (frames == NULL && !PyList_Check(batch)) {
        PyErr_SetString(PyExc_TypeError, "run: batch must be a list or Frames");
        return NULL;
    }
    PyObject *result = NULL;
    Core core;
    if (core_load(&core, state) < 0)
        goto out;
    PyObject *table = core.table;
    int events = core.events;
    /* the latest packet time the tracker has seen: a packet dated before it (time going backwards) is Python's,
     * which counts it and dates it at that time */
    Tally tally = {0, 0, 0, -INFINITY, core.latest};
    Py_ssize_t n = frames != NULL ? frames->n : PyList_GET_SIZE(batch);
    const unsigned char *base = frames != NULL ? frames_base(frames) : NULL;
    Py_ssize_t i = start < 0 ? 0 : start;
    long long nbytes = 0, started = 0, offloaded = 0;
    int reason = STOP_END;
    ConnObject *changed = NULL;
    PyObject *changes = NULL;
    int before_c = 0, before_s = 0;
    Frame fr;
    for (; i < n; i++) {
        double ts;
        PyObject *frame = NULL;   /* the frame's bytes object (a list's item), NULL for Frames */
        const unsigned char *f;
        Py_ssize_t size;
        if (frames != NULL) {
            const FrameEntry *e = &frames->e[i];
            ts = e->ts;
            f = base + e->off;
            size = e->len;
        } else {
            PyObject *item = PyList_GET_ITEM(batch, i);
            if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 ||
                !PyFloat_CheckExact(PyTuple_GET_ITEM(item, 0)) || !PyBytes_CheckExact(PyTuple_GET_ITEM(item, 1))) {
                reason = STOP_SLOW;
                break;
            }
            ts = PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(item, 0));
            frame = PyTuple_GET_ITEM(item, 1);
            f = (const unsigned char *)PyBytes_AS_STRING(frame);
            size = PyBytes_GET_SIZE(frame);
        }
        if (!(ts < limit)) {
            reason = STOP_TIME;
            break;
        }
        if (ts < tally.floor_ts) {
            reason = STOP_SLOW;
            break;
        }
        if (!decode_frame(dlt, f, size, verify, &fr) || (fr.csum == 0 && !own_source(own, own_len, &fr))) {
            reason = STOP_SLOW;
            break;
        }
        int flags = fr.seg.flags;
        int bogus = bogus_flags(flags);
        if (bogus) {
            reason = STOP_SLOW;
            break;
        }
        PyObject *key = flow_key(&fr);
        if (key == NULL)
            goto out;
        PyObject *found = PyDict_GetItemWithError(table, key);
        if (found == NULL && PyErr_Occurred()) {
            Py_DECREF(key);
            goto out;
        }
        if (found != NULL && (flags & (SYN | ACK | RST)) == SYN) {
            /* a SYN on a known tuple: a retransmission, a crossing or a new incarnation (Python's business) */
            Py_DECREF(key);
            reason = STOP_SLOW;
            break;
        }
        fr.key = key;
        if (found == NULL && !events && (flags & (SYN | ACK | RST)) == SYN) {
            /* a connection attempt on a free tuple: Tracker._new's first branch */
            int rc = new_connection(&core, &fr, ts, &found);
            if (rc < 0)
                goto out;
            started += rc;
        }
        Py_DECREF(key);
        if (found == NULL || !PyObject_TypeCheck(found, &ConnType) || ((ConnObject *)found)->ended != Py_None) {
            reason = STOP_SLOW;
            break;
        }
        ConnObject *conn = (ConnObject *)found;
        int from_client = is_from_client(conn, &fr);
        fr.seg.ts = ts;
        if (name_frames != NULL && from_client && conn->c->payload == 0 && fr.seg.payload > 0 &&
            may_name(f + fr.payload_at, size - fr.payload_at)) {
            /* names (engine/names.py): the client's first data, if it may be a ClientHello or an HTTP request */
            PyObject *cand = frame != NULL
                ? Py_BuildValue("(dOny#y#ii)", ts, frame, fr.payload_at, (const char *)fr.dst,
                                (Py_ssize_t)fr.addr_len, (const char *)fr.src, (Py_ssize_t)fr.addr_len, fr.sport,
                                fr.dport)
                : Py_BuildValue("(dy#ny#y#ii)", ts, (const char *)f, size, fr.payload_at, (const char *)fr.dst,
                                (Py_ssize_t)fr.addr_len, (const char *)fr.src, (Py_ssize_t)fr.addr_len, fr.sport,
                                fr.dport);
            if (cand == NULL || PyList_Append(name_frames, cand) < 0) {
                Py_XDECREF(cand);
                goto out;
            }
            Py_DECREF(cand);
        }
        int c_state = conn->c->state, s_state = conn->s->state;
        PyObject *moves;
        if (apply_counted(&core, conn, &fr.seg, from_client, ts, &moves, &tally) < 0)
            goto out;
        offloaded += fr.csum == 0;
        nbytes += size;
        int settled = settle(&core, conn, &moves, events, &limit);
        if (settled < 0)
            goto out;
        if (settled > 0) {
            reason = STOP_CHANGED;
            changed = conn;
            changes = moves;
            before_c = c_state;
            before_s = s_state;
            break;
        }
    }
    if (changed == NULL)
        result = Py_BuildValue("(inLLLLLdOOOL)", reason, i, tally.packets, nbytes, tally.suspicious, tally.odd,
                               started, tally.last_ts, Py_None, Py_None, Py_None, offloaded);
    else
        result = Py_BuildValue("(inLLLLLdONNL)", reason, i, tally.packets, nbytes, tally.suspicious, tally.odd,
                               started, tally.last_ts, (PyObject *)changed, changes,
                               Py_BuildValue("(ii)", before_c, before_s), offloaded);
out:
    core_release(&core);
    return result;
}

/* ---------------------------------------------------------------------------------------------------------------
 * The ladder's replay (engine/flow_packets.attribute): one connection's packets through its private tracker, each
 * packet coming out as a FlowPacket with the two states right after it and its marks. The common packet is taken
 * here, as the packet loop (run) takes it, with the marks attribute() gives it; any other is left to Python.
 * ------------------------------------------------------------------------------------------------------------ */

enum { MK_RETRANS, MK_OOO, MK_ZERO_WIN, MK_RST_IGNORED, MK_RST_ODD, MK_BAD_CSUM, MK_BAD_FLAGS, MK_DUP_ACK, N_MARKS };

/* the counters a packet can move (flow_packets._counters, in _MARK_ORDER) */
static void flow_counters(const ConnObject *conn, int from_client, uint32_t *out) {
    const SideObject *side = from_client ? conn->c : conn->s;
    out[0] = side->retrans;
    out[1] = side->ooo;
    out[2] = side->zero_win;
    out[3] = conn->suspicious_rst;
    out[4] = conn->odd_rst;
    out[5] = conn->bad_checksum;
    out[6] = conn->bad_flags;
}

/* flow_run(batch, start, limit, core, conn, verify, dlt, first, last, out, kinds, last_ack, prev, keep_frames)
 *     -> (reason, index, packets, suspicious, odd, last_ts, changes, states_before)
 *
 * Replays batch[start:] (a list of (ts, frame) of link type `dlt`) on the private tracker whose CoreState is `core`,
 * for its connection `conn` (live, the table's entry for its tuple, already scheduled), appending one FlowPacket
 * per packet of it to `out`. `kinds` is (Segment, FlowPacket, the 8 mark strings: retrans, ooo, zero_win,
 * rst_ignored, rst_odd, bad_csum, bad_flags, dup_ack); `last_ack` the list [client's ACK, window, server's ACK,
 * window] of their last ACKs (-1: none), read and written back; `prev` the (client, server) states before the
 * first packet. A frame of another tuple is passed over (attribute() would pass it over too). It stops, leaving
 * the packet to Python, at one dated at or after `limit` (a timer due: TIME), outside [first, last], before the
 * latest packet time, or that is not the plain shape, has a bad checksum, bogus flags or is a pure SYN (SLOW); right
 * after a packet whose change Python must finish (CHANGED: `index` is that packet, already in `out`, `changes` its
 * transitions, `states_before` the states before it); or at the batch's end (END). */
static PyObject *py_flow_run(PyObject *module, PyObject *args) {
    PyObject *batch, *state, *out, *kinds, *last_ack_list, *prev;
    ConnObject *conn;
    Py_ssize_t start;
    double limit, first, last;
    int verify, dlt, keep_frames;
    if (!PyArg_ParseTuple(args, "O!ndOO!piddO!O!O!O!p", &PyList_Type, &batch, &start, &limit, &state, &ConnType,
                          &conn, &verify, &dlt, &first, &last, &PyList_Type, &out, &PyTuple_Type, &kinds,
                          &PyList_Type, &last_ack_list, &PyTuple_Type, &prev, &keep_frames))
        return NULL;
    if (PyTuple_GET_SIZE(kinds) != 3 || !PyTuple_Check(PyTuple_GET_ITEM(kinds, 2)) ||
        PyTuple_GET_SIZE(PyTuple_GET_ITEM(kinds, 2)) != N_MARKS || PyList_GET_SIZE(last_ack_list) != 4 ||
        PyTuple_GET_SIZE(prev) != 2) {
        PyErr_SetString(PyExc_TypeError, "flow_run: kinds (Segment, FlowPacket, 8 marks), last_ack [4], prev (c, s)");
        return NULL;
    }
    PyObject *seg_type = PyTuple_GET_ITEM(kinds, 0), *packet_type = PyTuple_GET_ITEM(kinds, 1);
    PyObject *mark_names = PyTuple_GET_ITEM(kinds, 2);
    long long last_ack[4];
    for (int j = 0; j < 4; j++) {
        last_ack[j] = PyLong_AsLongLong(PyList_GET_ITEM(last_ack_list, j));
        if (last_ack[j] == -1 && PyErr_Occurred())
            return NULL;
    }
    long prev_c = PyLong_AsLong(PyTuple_GET_ITEM(prev, 0)), prev_s = PyLong_AsLong(PyTuple_GET_ITEM(prev, 1));
    if (PyErr_Occurred())
        return NULL;
    PyObject *result = NULL;
    PyObject *addr[2] = {NULL, NULL};     /* the client's and the server's address, as bytes: every packet's */
    PyObject *macs[2] = {NULL, NULL};     /* each side's last MAC, as bytes (it rarely changes) */
    PyObject *states = NULL;              /* the last (client, server) tuple made */
    PyObject *no_vlan = PyTuple_New(0);
    Core core;
    if (core_load(&core, state) < 0 || no_vlan == NULL)
        goto out;
    addr[0] = PyBytes_FromStringAndSize((const char *)conn->c_addr, conn->c_addr_len);
    addr[1] = PyBytes_FromStringAndSize((const char *)conn->s_addr, conn->s_addr_len);
    states = Py_BuildValue("(ll)", prev_c, prev_s);
    if (addr[0] == NULL || addr[1] == NULL || states == NULL)
        goto out;
    Tally tally = {0, 0, 0, -INFINITY, core.latest};
    Py_ssize_t n = PyList_GET_SIZE(batch), i = start;
    int reason = STOP_END;
    PyObject *changes = NULL;
    int before_c = 0, before_s = 0;
    Frame fr;
    for (; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(batch, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 || !PyFloat_CheckExact(PyTuple_GET_ITEM(item, 0)) ||
            !PyBytes_CheckExact(PyTuple_GET_ITEM(item, 1))) {
            reason = STOP_SLOW;
            break;
        }
        PyObject *ts_obj = PyTuple_GET_ITEM(item, 0), *frame = PyTuple_GET_ITEM(item, 1);
        double ts = PyFloat_AS_DOUBLE(ts_obj);
        if (!(ts < limit)) {
            reason = STOP_TIME;
            break;
        }
        if (ts < tally.floor_ts || ts < first || ts > last) {
            reason = STOP_SLOW;
            break;
        }
        const unsigned char *f = (const unsigned char *)PyBytes_AS_STRING(frame);
        Py_ssize_t size = PyBytes_GET_SIZE(frame);
        if (!decode_frame(dlt, f, size, verify, &fr) || fr.csum == 0) {
            reason = STOP_SLOW;
            break;
        }
        PyObject *key = flow_key(&fr);
        if (key == NULL)
            goto out;
        int same = PyObject_RichCompareBool(key, conn->key, Py_EQ);
        Py_DECREF(key);
        if (same < 0)
            goto out;
        if (!same)
            continue;   /* another VLAN's, or an ICMP-shaped frame's tuple: not this connection's */
        int flags = fr.seg.flags;
        int bogus = bogus_flags(flags);
        if (bogus || (flags & (SYN | ACK | RST)) == SYN || conn->ended != Py_None || conn->deadline == INFINITY) {
            reason = STOP_SLOW;
            break;
        }
        int from_client = is_from_client(conn, &fr);
        fr.seg.ts = ts;
        uint32_t before[7], after[7];
        flow_counters(conn, from_client, before);
        int c_state = conn->c->state, s_state = conn->s->state;
        PyObject *moves;
        if (apply_counted(&core, conn, &fr.seg, from_client, ts, &moves, &tally) < 0)
            goto out;
        /* the marks (flow_packets._marks) */
        flow_counters(conn, from_client, after);
        int marks[N_MARKS], n_marks = 0;
        for (int m = 0; m < 7; m++)
            if (after[m] != before[m])
                marks[n_marks++] = m;
        if ((flags & ACK) && !(flags & RST)) {
            int at = from_client ? 0 : 2;
            if (!(flags & (SYN | FIN)) && fr.seg.payload == 0 && fr.seg.win && last_ack[at] == (long long)fr.seg.ack &&
                last_ack[at + 1] == (long long)fr.seg.win) {
                SideObject *peer = from_client ? conn->s : conn->c;
                if (OPT(peer, snd_nxt) != NONE && peer->snd_nxt != fr.seg.ack)
                    marks[n_marks++] = MK_DUP_ACK;
            }
            last_ack[at] = fr.seg.ack;
            last_ack[at + 1] = fr.seg.win;
        }
        PyObject *mark_tuple = PyTuple_New(n_marks);
        if (mark_tuple == NULL) {
            Py_XDECREF(moves);
            goto out;
        }
        for (int m = 0; m < n_marks; m++)
            PyTuple_SET_ITEM(mark_tuple, m, Py_NewRef(PyTuple_GET_ITEM(mark_names, marks[m])));
        /* the states right after it, and whether it moved either */
        int now_c = conn->c->state, now_s = conn->s->state;
        int moved = now_c != prev_c || now_s != prev_s;
        if (moved) {
            Py_SETREF(states, Py_BuildValue("(ii)", now_c, now_s));
            prev_c = now_c;
            prev_s = now_s;
        }
        /* the Segment the Python decoder makes of it, and its FlowPacket */
        int side = from_client ? 0 : 1;
        if (macs[side] == NULL || PyBytes_GET_SIZE(macs[side]) != fr.seg.mac_len ||
            memcmp(PyBytes_AS_STRING(macs[side]), fr.seg.mac, fr.seg.mac_len) != 0)
            Py_XSETREF(macs[side], PyBytes_FromStringAndSize((const char *)fr.seg.mac, fr.seg.mac_len));
        PyObject *seg = NULL, *packet = NULL;
        /* the VLAN ids: the connection's tuple (the key says they are the same), made afresh if it is not one */
        PyObject *vlan = fr.n_vlan == 0 ? Py_NewRef(no_vlan)
                         : PyTuple_Check(conn->vlan) && PyTuple_GET_SIZE(conn->vlan) == fr.n_vlan ? Py_NewRef(conn->vlan)
                         : fr.n_vlan == 2 ? Py_BuildValue("(ii)", fr.vlan[0], fr.vlan[1])
                                          : Py_BuildValue("(i)", fr.vlan[0]);
        if (states != NULL && macs[side] != NULL && vlan != NULL) {
            PyObject *fields[16] = {
                ts_obj, vlan, addr[side], addr[1 - side], PyLong_FromLong(fr.sport), PyLong_FromLong(fr.dport),
                PyLong_FromUnsignedLong(fr.seg.seq), PyLong_FromUnsignedLong(fr.seg.ack),
                PyLong_FromLong(fr.seg.flags), PyLong_FromLong(fr.seg.win), PyLong_FromUnsignedLong(fr.seg.payload),
                PyLong_FromUnsignedLong(fr.seg.ip_len), PyLong_FromLong(fr.seg.ttl),
                fr.csum < 0 ? Py_None : Py_True, fr.seg.truncated ? Py_True : Py_False, macs[side]};
            int made = 1;
            for (int k = 4; k < 13; k++)
                made &= fields[k] != NULL;
            if (made)
                seg = PyObject_Vectorcall(seg_type, fields, 16, NULL);
            for (int k = 4; k < 13; k++)
                Py_XDECREF(fields[k]);
            PyObject *index = seg ? PyLong_FromSsize_t(PyList_GET_SIZE(out)) : NULL;
            if (index != NULL) {
                PyObject *pargs[8] = {index, ts_obj, keep_frames ? frame : Py_None, seg,
                                      from_client ? Py_True : Py_False, states, moved ? Py_True : Py_False,
                                      mark_tuple};
                packet = PyObject_Vectorcall(packet_type, pargs, 8, NULL);
                Py_DECREF(index);
            }
        }
        Py_XDECREF(seg);
        Py_XDECREF(vlan);
        Py_DECREF(mark_tuple);
        if (packet == NULL || PyList_Append(out, packet) < 0) {
            Py_XDECREF(packet);
            Py_XDECREF(moves);
            goto out;
        }
        Py_DECREF(packet);
        int settled = settle(&core, conn, &moves, core.events, &limit);
        if (settled < 0)
            goto out;
        if (settled > 0) {
            reason = STOP_CHANGED;
            changes = moves;
            before_c = c_state;
            before_s = s_state;
            break;
        }
    }
    for (int j = 0; j < 4; j++) {
        PyObject *v = PyLong_FromLongLong(last_ack[j]);
        if (v == NULL || PyList_SetItem(last_ack_list, j, v) < 0) {
            Py_XDECREF(changes);
            goto out;
        }
    }
    if (changes == NULL)
        result = Py_BuildValue("(inLLLdOO)", reason, i, tally.packets, tally.suspicious, tally.odd, tally.last_ts,
                               Py_None, Py_None);
    else
        result = Py_BuildValue("(inLLLdNN)", reason, i, tally.packets, tally.suspicious, tally.odd, tally.last_ts,
                               changes, Py_BuildValue("(ii)", before_c, before_s));
out:
    core_release(&core);
    Py_XDECREF(no_vlan);
    Py_XDECREF(addr[0]);
    Py_XDECREF(addr[1]);
    Py_XDECREF(macs[0]);
    Py_XDECREF(macs[1]);
    Py_XDECREF(states);
    return result;
}

/* in_order(meta, latest) -> int: the latest time (whole microseconds) of a next_batch result's packets when none
 * is dated before the one read before it (nor before `latest`), else -1 (capture.clock then finds the late ones). */
static PyObject *py_in_order(PyObject *module, PyObject *args) {
    Py_buffer meta;
    long long latest;
    if (!PyArg_ParseTuple(args, "y*L", &meta, &latest))
        return NULL;
    const unsigned char *p = (const unsigned char *)meta.buf;
    Py_ssize_t count = meta.len / 16;
    for (Py_ssize_t i = 0; i < count; i++) {
        uint32_t sec, usec;
        memcpy(&sec, p + 16 * i, 4);
        memcpy(&usec, p + 16 * i + 4, 4);
        long long micro = (long long)sec * 1000000 + usec;
        if (micro < latest) {
            latest = -1;
            break;
        }
        latest = micro;
    }
    PyBuffer_Release(&meta);
    return PyLong_FromLongLong(latest);
}

/* split(data, meta) -> [(ts, frame), ...]: pcapy-ng's next_batch result as the list the engine takes. `meta`
 * packs (sec, usec, offset, caplen) per packet as native unsigned ints; ts is sec + usec * 1e-6, as in Python. */
static PyObject *py_split(PyObject *module, PyObject *args) {
    Py_buffer data, meta;
    if (!PyArg_ParseTuple(args, "y*y*", &data, &meta))
        return NULL;
    PyObject *out = NULL;
    if (meta.len % 16 != 0) {
        PyErr_SetString(PyExc_ValueError, "meta must hold 16 bytes per packet");
        goto done;
    }
    Py_ssize_t n = meta.len / 16;
    out = PyList_New(n);
    if (out == NULL)
        goto done;
    const unsigned char *m = meta.buf;
    for (Py_ssize_t i = 0; i < n; i++, m += 16) {
        uint32_t field[4];
        memcpy(field, m, 16);
        if ((Py_ssize_t)field[2] + (Py_ssize_t)field[3] > data.len) {
            PyErr_SetString(PyExc_ValueError, "a packet lies outside the batch's data");
            Py_CLEAR(out);
            goto done;
        }
        PyObject *item = Py_BuildValue("(dy#)", (double)field[0] + (double)field[1] * 1e-6,
                                       (const char *)data.buf + field[2], (Py_ssize_t)field[3]);
        if (item == NULL) {
            Py_CLEAR(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, item);
    }
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&meta);
    return out;
}

/* ------------------------------------------------------------------------------------------------------------
 * Placement: which shard owns a frame (engine/placement.py). The shard is a hash of the decoded flow key's
 * addresses and ports (engine.share_filter.shard_of: the same for both directions), so only frames this decoder reads as
 * the plain shape are placed here; anything else is UNPLACED and placed by the Python decoder.
 * ------------------------------------------------------------------------------------------------------------ */

#define UNPLACED 255

enum { DLT_RAW = 12, DLT_RAW_BSD = 14, LINKTYPE_RAW = 101, LINKTYPE_IPV4 = 228, LINKTYPE_IPV6 = 229 };

static int place_one(int dlt, const unsigned char *f, Py_ssize_t size, int count) {
    Frame fr;
    unsigned char eth[14 + 128];
    if (dlt == DLT_RAW || dlt == DLT_RAW_BSD || dlt == LINKTYPE_RAW || dlt == LINKTYPE_IPV4 || dlt == LINKTYPE_IPV6) {
        /* raw IP: the headers under an Ethernet header of their type (as frame.py's raw path picks the version),
         * so the one decoder reads them; without checksums nothing past the TCP header is read */
        if (size < 1)
            return UNPLACED;
        int version = dlt == LINKTYPE_IPV4 ? 4 : dlt == LINKTYPE_IPV6 ? 6 : f[0] >> 4;
        if (version != 4 && version != 6)
            return UNPLACED;
        memset(eth, 0, 12);
        eth[12] = version == 4 ? 0x08 : 0x86;
        eth[13] = version == 4 ? 0x00 : 0xDD;
        memcpy(eth + 14, f, size < 128 ? size : 128);
        f = eth;
        size += 14;
        dlt = DLT_EN10MB;
    }
    if (!decode_frame(dlt, f, size, 0, &fr))
        return UNPLACED;
    int n = fr.addr_len;
    unsigned mixed = be16(fr.src + n - 2) ^ be16(fr.dst + n - 2) ^ fr.sport ^ fr.dport;
    return (int)((((mixed * 40503u) >> 16) & 0xFFFFu) % (unsigned)count);
}

/* place(batch, dlt, count) -> bytes: each packet's shard, UNPLACED where the Python decoder must say. */
static PyObject *py_place(PyObject *module, PyObject *args) {
    PyObject *batch;
    int dlt, count;
    if (!PyArg_ParseTuple(args, "O!ii", &PyList_Type, &batch, &dlt, &count))
        return NULL;
    if (count < 1 || count >= UNPLACED) {
        PyErr_SetString(PyExc_ValueError, "count must be between 1 and 254");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(batch);
    PyObject *out = PyBytes_FromStringAndSize(NULL, n);
    if (out == NULL)
        return NULL;
    unsigned char *marks = (unsigned char *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(batch, i);
        PyObject *frame;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 || !PyBytes_Check(frame = PyTuple_GET_ITEM(item, 1))) {
            Py_DECREF(out);
            PyErr_SetString(PyExc_TypeError, "batch items must be (ts, frame bytes)");
            return NULL;
        }
        marks[i] = (unsigned char)place_one(dlt, (const unsigned char *)PyBytes_AS_STRING(frame),
                                            PyBytes_GET_SIZE(frame), count);
    }
    return out;
}

/* split_share(data, meta, dlt, count, shard) -> (packets, unplaced): split's list, keeping only the packets placed
 * on `shard` and those this decoder cannot place (their indexes in `packets` are listed in `unplaced`). */
static PyObject *py_split_share(PyObject *module, PyObject *args) {
    Py_buffer data, meta;
    int dlt, count, shard;
    if (!PyArg_ParseTuple(args, "y*y*iii", &data, &meta, &dlt, &count, &shard))
        return NULL;
    PyObject *out = NULL, *unplaced = NULL, *result = NULL;
    if (meta.len % 16 != 0 || count < 1 || count >= UNPLACED || shard < 0 || shard >= count) {
        PyErr_SetString(PyExc_ValueError, "meta must hold 16 bytes per packet, and 0 <= shard < count < 255");
        goto done;
    }
    Py_ssize_t n = meta.len / 16;
    if ((out = PyList_New(0)) == NULL || (unplaced = PyList_New(0)) == NULL)
        goto done;
    const unsigned char *m = meta.buf;
    for (Py_ssize_t i = 0; i < n; i++, m += 16) {
        uint32_t field[4];
        memcpy(field, m, 16);
        if ((Py_ssize_t)field[2] + (Py_ssize_t)field[3] > data.len) {
            PyErr_SetString(PyExc_ValueError, "a packet lies outside the batch's data");
            goto done;
        }
        const unsigned char *f = (const unsigned char *)data.buf + field[2];
        int where = place_one(dlt, f, (Py_ssize_t)field[3], count);
        if (where != shard && where != UNPLACED)
            continue;
        if (where == UNPLACED) {
            PyObject *at = PyLong_FromSsize_t(PyList_GET_SIZE(out));
            if (at == NULL || PyList_Append(unplaced, at) < 0) {
                Py_XDECREF(at);
                goto done;
            }
            Py_DECREF(at);
        }
        PyObject *item = Py_BuildValue("(dy#)", (double)field[0] + (double)field[1] * 1e-6, (const char *)f,
                                       (Py_ssize_t)field[3]);
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            goto done;
        }
        Py_DECREF(item);
    }
    result = PyTuple_Pack(2, out, unplaced);
done:
    Py_XDECREF(out);
    Py_XDECREF(unplaced);
    PyBuffer_Release(&data);
    PyBuffer_Release(&meta);
    return result;
}

/* ---------------------------------------------------------------------------------------------------------------
 * One connection record as JSON text (issue #11)
 *
 * The text json.JSONEncoder(separators=(",", ":")).encode(engine.records.connection_dict(conn)) gives, byte for
 * byte, written straight from the C record: no row tuple, no dict, no encoder walk. The field list, names and
 * order are engine/records.py's FIELDS (tests/unit/test_record_contract.py holds them equal on every capture);
 * floats are written as Python's repr writes them, and rounded as round() rounds (dtoa mode 3, then back).
 * The Zeek conn_state comes from the caller (tcp/zeek.py is its one definition). Anything unusual (a string that
 * would need escaping, a VLAN stack that is not a tuple of ints) returns None: the caller encodes it in Python.
 * ------------------------------------------------------------------------------------------------------------ */

typedef struct {
    char *p;
    size_t len, cap;
    char local[1024];
    int failed;
} TextBuf;

static int tb_grow(TextBuf *b, size_t more) {
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap * 2;
    while (cap < b->len + more)
        cap *= 2;
    char *grown = b->p == b->local ? PyMem_Malloc(cap) : PyMem_Realloc(b->p, cap);
    if (grown == NULL) {
        b->failed = 1;
        return -1;
    }
    if (b->p == b->local)
        memcpy(grown, b->local, b->len);
    b->p = grown;
    b->cap = cap;
    return 0;
}

static void tb_put(TextBuf *b, const char *s, size_t n) {
    if (tb_grow(b, n) < 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

#define TB_LIT(B, S) tb_put((B), (S), sizeof(S) - 1)

static void tb_ull(TextBuf *b, unsigned long long v) {
    char tmp[24];
    char *end = tmp + sizeof tmp, *p = end;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    tb_put(b, p, (size_t)(end - p));
}

static void tb_ll(TextBuf *b, long long v) {
    if (v < 0) {
        tb_put(b, "-", 1);
        tb_ull(b, 0ULL - (unsigned long long)v);
    } else {
        tb_ull(b, (unsigned long long)v);
    }
}

/* The fast case of repr(v): 1e-4 <= |v| < 2^32 with at most 6 decimals (a capture's microsecond timestamps,
 * durations, milliseconds rounded to 3). There, doubles are less than 1e-6 apart, so at most one number of 6
 * decimals reads back as v, and repr (the shortest text that does) is that number without its trailing zeros.
 * m / 1e6 with m < 2^53 is what reading "m/1e6" back gives (both exact, the division correctly rounded), so the
 * test is exact. Returns 0 when v is not such a number (the caller asks dtoa). */
static int tb_float_short(TextBuf *b, double v) {
    double a = fabs(v);
    if (a == 0.0) {
        if (signbit(v))
            TB_LIT(b, "-0.0");
        else
            TB_LIT(b, "0.0");
        return 1;
    }
    if (!(a >= 1e-4 && a < 4294967296.0))
        return 0;
    unsigned long long m = (unsigned long long)llround(a * 1e6);
    if ((double)m / 1e6 != a)
        return 0;
    char tmp[40];
    char *end = tmp + sizeof tmp, *p = end;
    int decimals = 6;
    while (decimals > 1 && m % 10 == 0) {  /* trailing zeros go; one decimal stays (1.0) */
        m /= 10;
        decimals--;
    }
    for (int i = 0; i < decimals; i++) {
        *--p = (char)('0' + m % 10);
        m /= 10;
    }
    *--p = '.';
    do {
        *--p = (char)('0' + m % 10);
        m /= 10;
    } while (m);
    if (v < 0)
        *--p = '-';
    tb_put(b, p, (size_t)(end - p));
    return 1;
}

/* repr(v), as the json module writes a float (NaN and infinities as it spells them) */
static void tb_float(TextBuf *b, double v) {
    if (isnan(v)) {
        TB_LIT(b, "NaN");
        return;
    }
    if (isinf(v)) {
        if (v > 0)
            TB_LIT(b, "Infinity");
        else
            TB_LIT(b, "-Infinity");
        return;
    }
    if (tb_float_short(b, v))
        return;
    char *text = PyOS_double_to_string(v, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (text == NULL) {
        b->failed = 1;
        return;
    }
    tb_put(b, text, strlen(text));
    PyMem_Free(text);
}

/* round(v, digits) as Python rounds a float: the correctly rounded decimal, read back. The fast case: |v * 10^digits|
 * < 2^40 (its rounding error is below 2^-12) and not within 1e-3 of a half, rounded to the integer m; m / 10^digits
 * is then what reading the decimal back gives (m exact, the division correctly rounded). */
static double round_digits(double v, int digits, int *failed) {
    if (!isfinite(v))
        return v;
    static const double POW10[] = {1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6};
    if (digits >= 0 && digits <= 6) {
        double scaled = v * POW10[digits];
        double frac = scaled - floor(scaled);
        if (fabs(scaled) < 1099511627776.0 && fabs(frac - 0.5) > 1e-3) {
            double out = (double)llround(scaled) / POW10[digits];
            return out == 0.0 ? copysign(0.0, v) : out;
        }
    }
    char *text = PyOS_double_to_string(v, 'f', digits, 0, NULL);
    if (text == NULL) {
        *failed = 1;
        return v;
    }
    double out = PyOS_string_to_double(text, NULL, NULL);
    PyMem_Free(text);
    if (out == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        *failed = 1;
    }
    return out;
}

/* a JSON string that needs no escaping (printable ASCII but '"' and '\\'), else failed */
static void tb_plain_chars(TextBuf *b, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch >= 0x7F || ch == '"' || ch == '\\') {
            b->failed = 1;
            return;
        }
    }
    tb_put(b, "\"", 1);
    tb_put(b, s, n);
    tb_put(b, "\"", 1);
}

static void tb_str_or_null(TextBuf *b, PyObject *v) {
    if (v == Py_None) {
        TB_LIT(b, "null");
        return;
    }
    if (!PyUnicode_Check(v) || !PyUnicode_IS_ASCII(v)) {
        b->failed = 1;
        return;
    }
    tb_plain_chars(b, (const char *)PyUnicode_1BYTE_DATA(v), (size_t)PyUnicode_GET_LENGTH(v));
}

static void tb_endpoint(TextBuf *b, const unsigned char *addr, int len, int port) {
    char text[INET6_ADDRSTRLEN + 1];
    char tmp[INET6_ADDRSTRLEN + 16];
    int n;
    if (len == 4) {
        tb_put(b, "\"", 1);
        for (int i = 0; i < 4; i++) {
            if (i)
                tb_put(b, ".", 1);
            tb_ull(b, addr[i]);
        }
        tb_put(b, ":", 1);
        tb_ull(b, (unsigned long long)port);
        tb_put(b, "\"", 1);
        return;
    } else if (len == 16) {
        if (inet_ntop(AF_INET6, addr, text, sizeof text) == NULL) {
            b->failed = 1;
            return;
        }
        n = snprintf(tmp, sizeof tmp, "\"[%s]:%d\"", text, port);
    } else {
        b->failed = 1;
        return;
    }
    tb_put(b, tmp, (size_t)n);
}

static void tb_opt_ms(TextBuf *b, double seconds) {
    if (isnan(seconds))
        TB_LIT(b, "null");
    else
        tb_float(b, round_digits(seconds * 1000.0, 3, &b->failed));
}

static PyObject *py_record_json(PyObject *module, PyObject *args) {
    PyObject *obj, *zeek_state;
    if (!PyArg_ParseTuple(args, "O!U", &ConnType, &obj, &zeek_state))
        return NULL;
    ConnObject *conn = (ConnObject *)obj;
    SideObject *c = conn->c, *s = conn->s;
    TextBuf b = {.p = NULL, .len = 0, .cap = sizeof b.local, .failed = 0};
    b.p = b.local;

    TB_LIT(&b, "{\"conn\":");
    tb_ll(&b, conn->id);
    TB_LIT(&b, ",\"client\":");
    tb_endpoint(&b, conn->c_addr, conn->c_addr_len, conn->c_port);
    TB_LIT(&b, ",\"server\":");
    tb_endpoint(&b, conn->s_addr, conn->s_addr_len, conn->s_port);
    TB_LIT(&b, ",\"vlan\":[");
    if (!PyTuple_Check(conn->vlan)) {
        b.failed = 1;
    } else {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(conn->vlan); i++) {
            PyObject *tag = PyTuple_GET_ITEM(conn->vlan, i);
            if (!PyLong_CheckExact(tag)) {
                b.failed = 1;
                break;
            }
            long long v = PyLong_AsLongLong(tag);
            if (v == -1 && PyErr_Occurred()) {
                PyErr_Clear();
                b.failed = 1;
                break;
            }
            if (i)
                TB_LIT(&b, ",");
            tb_ll(&b, v);
        }
    }
    TB_LIT(&b, "],\"shard\":");
    tb_ll(&b, conn->shard);
    if (c->state >= N_STATES || s->state >= N_STATES) {
        b.failed = 1;
    } else {
        TB_LIT(&b, ",\"client_state\":\"");
        tb_put(&b, STATE_NAMES[c->state], strlen(STATE_NAMES[c->state]));
        TB_LIT(&b, "\",\"server_state\":\"");
        tb_put(&b, STATE_NAMES[s->state], strlen(STATE_NAMES[s->state]));
        TB_LIT(&b, "\"");
    }
    TB_LIT(&b, ",\"first\":");
    tb_float(&b, conn->first);
    TB_LIT(&b, ",\"last\":");
    tb_float(&b, conn->last);
    TB_LIT(&b, ",\"duration\":");
    tb_float(&b, round_digits(conn->last - conn->first, 6, &b.failed));
#define SIDES(NAME, FIELD)                                                                                      \
    TB_LIT(&b, ",\"" NAME "_c2s\":");                                                                           \
    tb_ull(&b, (unsigned long long)c->FIELD);                                                                   \
    TB_LIT(&b, ",\"" NAME "_s2c\":");                                                                           \
    tb_ull(&b, (unsigned long long)s->FIELD);
    SIDES("packets", packets)
    SIDES("bytes", ip_bytes)
    SIDES("payload", payload)
    SIDES("retrans_bytes", retrans_bytes)
    SIDES("retrans_packets", retrans)
    SIDES("ooo", ooo)
    SIDES("zero_win", zero_win)
#undef SIDES
    TB_LIT(&b, ",\"rtt_client_ms\":");
    tb_opt_ms(&b, conn->rtt_client);
    TB_LIT(&b, ",\"rtt_server_ms\":");
    tb_opt_ms(&b, conn->rtt_server);
    TB_LIT(&b, ",\"rst_by\":");
    tb_str_or_null(&b, conn->rst_by);
    TB_LIT(&b, ",\"suspicious_rst\":");
    tb_ull(&b, conn->suspicious_rst);
    TB_LIT(&b, ",\"odd_rst\":");
    tb_ull(&b, conn->odd_rst);
    TB_LIT(&b, ",\"bad_flags\":");
    tb_ull(&b, conn->bad_flags);
    TB_LIT(&b, ",\"bad_checksum\":");
    tb_ull(&b, conn->bad_checksum);
    TB_LIT(&b, ",\"zeek_state\":");
    tb_str_or_null(&b, zeek_state);
    TB_LIT(&b, ",\"history\":");
    tb_plain_chars(&b, conn->hist ? conn->hist : "", conn->hist_len);
    if (conn->midstream)
        TB_LIT(&b, ",\"midstream\":true,\"ended\":");
    else
        TB_LIT(&b, ",\"midstream\":false,\"ended\":");
    tb_str_or_null(&b, conn->ended);
    TB_LIT(&b, ",\"end_ts\":");
    if (isnan(conn->end_ts))
        TB_LIT(&b, "null");
    else
        tb_float(&b, conn->end_ts);
    TB_LIT(&b, ",\"transitions\":");
    tb_ull(&b, (unsigned long long)conn->log_n + conn->transitions_dropped);
    TB_LIT(&b, "}");

    PyObject *out;
    if (b.failed) {
        if (PyErr_Occurred() && PyErr_ExceptionMatches(PyExc_MemoryError))
            out = NULL;
        else {
            PyErr_Clear();
            out = Py_NewRef(Py_None);
        }
    } else {
        out = PyUnicode_DecodeASCII(b.p, (Py_ssize_t)b.len, NULL);
    }
    if (b.p != b.local)
        PyMem_Free(b.p);
    return out;
}

/* format(v, ".<digits>f") as Python writes it; the fast case as in round_digits (the sign kept for a negative
 * value that rounds to zero, as Python keeps it) */
static void tb_fixed(TextBuf *b, double v, int digits) {
    static const double POW10[] = {1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6};
    if (isfinite(v) && digits >= 1 && digits <= 6) {
        double scaled = fabs(v) * POW10[digits];
        double frac = scaled - floor(scaled);
        if (scaled < 1099511627776.0 && fabs(frac - 0.5) > 1e-3) {
            unsigned long long m = (unsigned long long)llround(scaled);
            char tmp[40];
            char *end = tmp + sizeof tmp, *p = end;
            for (int i = 0; i < digits; i++) {
                *--p = (char)('0' + m % 10);
                m /= 10;
            }
            *--p = '.';
            do {
                *--p = (char)('0' + m % 10);
                m /= 10;
            } while (m);
            if (signbit(v))
                *--p = '-';
            tb_put(b, p, (size_t)(end - p));
            return;
        }
    }
    char *text = PyOS_double_to_string(v, 'f', digits, 0, NULL);
    if (text == NULL) {
        b->failed = 1;
        return;
    }
    tb_put(b, text, strlen(text));
    PyMem_Free(text);
}

/* a table cell: ASCII text without tabs or line ends; empty (or None) as `dash` says */
static void tb_cell(TextBuf *b, PyObject *v, int dash) {
    if (v == Py_None || (PyUnicode_Check(v) && PyUnicode_GET_LENGTH(v) == 0 && dash)) {
        tb_put(b, "-", 1);
        return;
    }
    if (!PyUnicode_Check(v) || !PyUnicode_IS_ASCII(v)) {
        b->failed = 1;
        return;
    }
    const char *s = (const char *)PyUnicode_1BYTE_DATA(v);
    Py_ssize_t n = PyUnicode_GET_LENGTH(v);
    if (memchr(s, '\t', n) || memchr(s, '\n', n) || memchr(s, '\r', n)) {
        b->failed = 1;
        return;
    }
    tb_put(b, s, (size_t)n);
}

/* the --summary table's cells of one connection (output/plain.py summary_row), tab-separated */
static PyObject *py_summary_cells(PyObject *module, PyObject *args) {
    PyObject *obj, *zeek_state;
    if (!PyArg_ParseTuple(args, "O!U", &ConnType, &obj, &zeek_state))
        return NULL;
    ConnObject *conn = (ConnObject *)obj;
    SideObject *c = conn->c, *s = conn->s;
    TextBuf b = {.p = NULL, .len = 0, .cap = sizeof b.local, .failed = 0};
    b.p = b.local;
    tb_ll(&b, conn->id);
    tb_put(&b, "\t", 1);
    tb_fixed(&b, conn->first, 6);
    tb_put(&b, "\t", 1);
    tb_fixed(&b, conn->last - conn->first, 6);
    tb_put(&b, "\t", 1);
    /* the endpoints as record_json writes them, without the quotes */
    TextBuf *bp = &b;
    size_t at = bp->len;
    tb_endpoint(bp, conn->c_addr, conn->c_addr_len, conn->c_port);
    if (!bp->failed) {  /* drop the quotes */
        memmove(bp->p + at, bp->p + at + 1, bp->len - at - 2);
        bp->len -= 2;
    }
    tb_put(&b, "\t", 1);
    at = bp->len;
    tb_endpoint(bp, conn->s_addr, conn->s_addr_len, conn->s_port);
    if (!bp->failed) {
        memmove(bp->p + at, bp->p + at + 1, bp->len - at - 2);
        bp->len -= 2;
    }
    tb_put(&b, "\t", 1);
    if (!PyTuple_Check(conn->vlan)) {
        b.failed = 1;
    } else if (PyTuple_GET_SIZE(conn->vlan) == 0) {
        tb_put(&b, "-", 1);
    } else {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(conn->vlan); i++) {
            PyObject *tag = PyTuple_GET_ITEM(conn->vlan, i);
            long long v = PyLong_CheckExact(tag) ? PyLong_AsLongLong(tag) : -1;
            if (v == -1) {
                PyErr_Clear();
                b.failed = 1;
                break;
            }
            if (i)
                tb_put(&b, ".", 1);
            tb_ll(&b, v);
        }
    }
    if (c->state >= N_STATES || s->state >= N_STATES) {
        b.failed = 1;
    } else {
        tb_put(&b, "\t", 1);
        tb_put(&b, STATE_NAMES[c->state], strlen(STATE_NAMES[c->state]));
        tb_put(&b, "\t", 1);
        tb_put(&b, STATE_NAMES[s->state], strlen(STATE_NAMES[s->state]));
    }
    tb_put(&b, "\t", 1);
    tb_cell(&b, zeek_state, 0);
    tb_put(&b, "\t", 1);
    if (conn->hist_len == 0) {
        tb_put(&b, "-", 1);
    } else {
        for (uint32_t i = 0; i < conn->hist_len; i++)
            if (conn->hist[i] == '\t' || conn->hist[i] == '\n' || conn->hist[i] == '\r')
                b.failed = 1;
        tb_put(&b, conn->hist, conn->hist_len);
    }
    tb_put(&b, "\t", 1);
    tb_ull(&b, c->packets);
    tb_put(&b, "\t", 1);
    tb_ull(&b, s->packets);
    tb_put(&b, "\t", 1);
    tb_ull(&b, c->ip_bytes);
    tb_put(&b, "\t", 1);
    tb_ull(&b, s->ip_bytes);
    tb_put(&b, "\t", 1);
    if (isnan(conn->rtt_client) || isnan(conn->rtt_server))
        tb_put(&b, "-", 1);
    else
        tb_fixed(&b, round_digits(conn->rtt_client * 1000.0, 3, &b.failed) +
                         round_digits(conn->rtt_server * 1000.0, 3, &b.failed), 3);
    tb_put(&b, "\t", 1);
    tb_cell(&b, conn->ended, 1);

    PyObject *out;
    if (b.failed) {
        if (PyErr_Occurred() && PyErr_ExceptionMatches(PyExc_MemoryError))
            out = NULL;
        else {
            PyErr_Clear();
            out = Py_NewRef(Py_None);
        }
    } else {
        out = PyUnicode_DecodeASCII(b.p, (Py_ssize_t)b.len, NULL);
    }
    if (b.p != b.local)
        PyMem_Free(b.p);
    return out;
}

/* The --summary table's two passes over tab-separated rows (output/plain.py summary_lines). */

/* measure_cells(row, widths): widths (a writable buffer of signed 64-bit ints, one per column) grows to the
 * longest cell seen in each column; returns how many cells the row has */
static PyObject *py_measure_cells(PyObject *module, PyObject *args) {
    const char *row;
    Py_ssize_t n;
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "s#w*", &row, &n, &view))
        return NULL;
    int64_t *widths = (int64_t *)view.buf;
    Py_ssize_t columns = view.len / (Py_ssize_t)sizeof(int64_t);
    Py_ssize_t column = 0, start = 0;
    for (Py_ssize_t i = 0; i <= n; i++) {
        if (i == n || row[i] == '\t') {
            if (column < columns) {
                /* a cell's width is its length in characters: count UTF-8 lead bytes only */
                int64_t len = 0;
                for (Py_ssize_t j = start; j < i; j++)
                    len += ((unsigned char)row[j] & 0xC0) != 0x80;
                if (len > widths[column])
                    widths[column] = len;
            }
            column++;
            start = i + 1;
        }
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(column);
}

/* lay_out(row, widths, right) -> str: the cells padded to their column's width (right-aligned where right[i] is
 * nonzero), two spaces apart, trailing spaces dropped, as "%*s  %-*s..." % cells then rstrip() writes them; None if
 * the row has another number of cells than there are columns */
static PyObject *py_lay_out(PyObject *module, PyObject *args) {
    const char *row;
    Py_ssize_t n;
    Py_buffer wview, rview;
    if (!PyArg_ParseTuple(args, "s#y*y*", &row, &n, &wview, &rview))
        return NULL;
    const int64_t *widths = (const int64_t *)wview.buf;
    const unsigned char *right = (const unsigned char *)rview.buf;
    Py_ssize_t columns = wview.len / (Py_ssize_t)sizeof(int64_t);
    TextBuf b = {.p = NULL, .len = 0, .cap = sizeof b.local, .failed = 0};
    b.p = b.local;
    Py_ssize_t column = 0, start = 0;
    int ok = rview.len >= columns;
    for (Py_ssize_t i = 0; ok && i <= n; i++) {
        if (i != n && row[i] != '\t')
            continue;
        if (column >= columns) {
            ok = 0;
            break;
        }
        int64_t len = 0;
        for (Py_ssize_t j = start; j < i; j++)
            len += ((unsigned char)row[j] & 0xC0) != 0x80;
        int64_t pad = widths[column] > len ? widths[column] - len : 0;
        if (column)
            tb_put(&b, "  ", 2);
        if (right[column])
            for (int64_t k = 0; k < pad; k++)
                tb_put(&b, " ", 1);
        tb_put(&b, row + start, (size_t)(i - start));
        if (!right[column])
            for (int64_t k = 0; k < pad; k++)
                tb_put(&b, " ", 1);
        column++;
        start = i + 1;
    }
    PyBuffer_Release(&wview);
    PyBuffer_Release(&rview);
    PyObject *out;
    if (b.failed) {
        out = PyErr_NoMemory();
    } else if (!ok || column != columns) {
        out = Py_NewRef(Py_None);
    } else {
        size_t len = b.len;
        while (len && (b.p[len - 1] == ' ' || b.p[len - 1] == '\t'))
            len--;
        out = PyUnicode_DecodeUTF8(b.p, (Py_ssize_t)len, NULL);
    }
    if (b.p != b.local)
        PyMem_Free(b.p);
    return out;
}

/* ---------------------------------------------------------------------------------------------------------------
 * IPFIX data records (export/flows.py, export/ipfix.py): one connection's record, in the "rfc5103" template's
 * order, written straight from the connection struct, so exporting costs the tracking no Python objects per record.
 *
 * export/ipfix.py's encode_record (with export/flows.py's FlowExporter._export_python) is the reference; the
 * unit tests check that both give the same bytes for every connection of the project's captures. The record's
 * state between two records of one connection (its counters then, that record's end, when it went out) is kept in
 * the caller's dict, id -> 80 bytes (8 counters, two doubles).
 * ------------------------------------------------------------------------------------------------------------ */

#define IPFIX_DONE_SIZE (8 * 8 + 8 + 8)
#define IPFIX_NO_RTT 0xFFFFFFFFull

enum { IPFIX_MIDSTREAM = 1, IPFIX_SUSPICIOUS_RST = 2, IPFIX_ODD_RST = 4, IPFIX_FLIPPED = 8 };

/* Zeek's conn_state (tcp/zeek.py conn_state) */
static const char *zeek_conn_state(const ConnObject *conn) {
    int o = conn->c->zstate, r = conn->s->zstate;
    int o_inactive = o == Z_INACTIVE || o == Z_PARTIAL, r_inactive = r == Z_INACTIVE || r == Z_PARTIAL;
    if (r == Z_RESET) {
        if (o == Z_SYN_SENT || o == Z_SYN_ACK_SENT || (o == Z_RESET && conn->c->payload == 0 && conn->s->payload == 0))
            return "REJ";
        return o_inactive ? "RSTRH" : "RSTR";
    }
    if (o == Z_RESET) {
        if (r_inactive) {
            /* ^\^?S[^HAFGIQ]*R */
            const char *h = conn->hist ? conn->hist : "";
            uint32_t n = conn->hist ? conn->hist_len : 0, i = 0;
            if (i < n && h[i] == '^')
                i++;
            if (i < n && h[i] == 'S') {
                for (i++; i < n; i++) {
                    if (h[i] == 'R')
                        return "RSTOS0";
                    if (strchr("HAFGIQ", h[i]) != NULL)
                        break;
                }
            }
            return "OTH";
        }
        return "RSTO";
    }
    if (o == Z_CLOSED && r == Z_CLOSED)
        return "SF";
    if (o == Z_CLOSED)
        return r_inactive ? "SH" : "S2";
    if (r == Z_CLOSED)
        return o_inactive ? "SHR" : "S3";
    if (o == Z_SYN_SENT && r == Z_INACTIVE)
        return "S0";
    if (o == Z_ESTABLISHED && r == Z_ESTABLISHED)
        return "S1";
    return "OTH";
}

/* the TCP flags each Zeek history letter stands for (export/flows.py _LETTER_FLAGS) */
static unsigned char history_letter_flags(char lower) {
    switch (lower) {
    case 's': case 'q': return SYN;
    case 'h': return SYN | ACK;
    case 'a': case 'd': return ACK;
    case 'f': return FIN;
    case 'r': return RST;
    case 'i': return FIN | RST;
    default: return 0;
    }
}

static inline unsigned char *ip_be16(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
    return p + 2;
}
static inline unsigned char *ip_be32(unsigned char *p, uint32_t v) {
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
    return p + 4;
}
static inline unsigned char *ip_be64(unsigned char *p, uint64_t v) {
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (unsigned char)v;
    return p + 8;
}
static inline unsigned char *ip_text(unsigned char *p, const char *s, size_t n) {
    if (n > 254)
        n = 254;
    *p++ = (unsigned char)n;
    memcpy(p, s, n);
    return p + n;
}
/* int(v) of a non-negative double, clamped to an unsigned element's range (ipfix._u) */
static inline uint64_t ip_clamp(double v, uint64_t top) {
    if (!(v >= 1.0))  /* (NaN too) */
        return 0;
    if (v >= 18446744073709551615.0 || (uint64_t)v > top)
        return top;
    return (uint64_t)v;
}

/* one record; `out` holds at least 2 * 16 + 61 + 4 * 255 + 38 bytes. Returns its length, or -1 (an odd value:
 * the Python encoder's business). */
static Py_ssize_t ipfix_encode(const ConnObject *conn, int reason, double start, const uint64_t *delta,
                               unsigned char *out) {
    const SideObject *c = conn->c, *s = conn->s;
    if (c->state >= N_STATES || s->state >= N_STATES || conn->c_addr_len != conn->s_addr_len ||
        (conn->c_addr_len != 4 && conn->c_addr_len != 16))
        return -1;
    long vlan = 0;
    if (PyTuple_Check(conn->vlan) && PyTuple_GET_SIZE(conn->vlan) > 0) {
        vlan = PyLong_AsLong(PyTuple_GET_ITEM(conn->vlan, 0));
        if (vlan == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return -1;
        }
    } else if (conn->vlan != Py_None && !PyTuple_Check(conn->vlan)) {
        return -1;
    }
    unsigned char flags_c = 0, flags_s = 0;
    for (uint32_t i = 0; i < conn->hist_len; i++) {
        char letter = conn->hist[i];
        if (letter >= 'A' && letter <= 'Z')
            flags_c |= history_letter_flags((char)(letter - 'A' + 'a'));
        else
            flags_s |= history_letter_flags(letter);
    }
    double last = conn->last, end = last >= start ? last : start;
    unsigned char *p = out;
    memcpy(p, conn->c_addr, conn->c_addr_len);
    p += conn->c_addr_len;
    memcpy(p, conn->s_addr, conn->s_addr_len);
    p += conn->s_addr_len;
    p = ip_be16(p, conn->c_port);
    p = ip_be16(p, conn->s_port);
    *p++ = 6;
    p = ip_be16(p, (uint32_t)(vlan & 0xFFF));
    p = ip_be64(p, ip_clamp(start * 1000.0 + 0.5, UINT64_MAX));
    p = ip_be64(p, ip_clamp(end * 1000.0 + 0.5, UINT64_MAX));
    p = ip_be64(p, delta[2]);  /* octets c2s, packets c2s, octets s2c, packets s2c */
    p = ip_be64(p, delta[0]);
    p = ip_be64(p, delta[3]);
    p = ip_be64(p, delta[1]);
    *p++ = flags_s;            /* reverseTcpControlBits first (export/ipfix.py _COUNTERS_5103) */
    *p++ = flags_c;
    *p++ = (unsigned char)reason;
    p = ip_text(p, STATE_NAMES[c->state], strlen(STATE_NAMES[c->state]));
    p = ip_text(p, STATE_NAMES[s->state], strlen(STATE_NAMES[s->state]));
    const char *zeek = zeek_conn_state(conn);
    p = ip_text(p, zeek, strlen(zeek));
    p = ip_text(p, conn->hist ? conn->hist : "", conn->hist ? conn->hist_len : 0);
    p = ip_be32(p, isnan(conn->rtt_client) ? IPFIX_NO_RTT
                                           : (uint32_t)ip_clamp(conn->rtt_client * 1e6 + 0.5, IPFIX_NO_RTT));
    p = ip_be32(p, isnan(conn->rtt_server) ? IPFIX_NO_RTT
                                           : (uint32_t)ip_clamp(conn->rtt_server * 1e6 + 0.5, IPFIX_NO_RTT));
    p = ip_be64(p, delta[6]);
    p = ip_be64(p, delta[7]);
    p = ip_be64(p, delta[4]);
    p = ip_be64(p, delta[5]);
    *p++ = (unsigned char)((conn->midstream ? IPFIX_MIDSTREAM : 0) | (conn->suspicious_rst ? IPFIX_SUSPICIOUS_RST : 0) |
                           (conn->odd_rst ? IPFIX_ODD_RST : 0) | (conn->flipped ? IPFIX_FLIPPED : 0));
    p = ip_be16(p, (uint32_t)(conn->shard & 0xFFFF));
    return p - out;
}

/* the record of one connection since its previous one: (now, is IPv4, bytes), None (nothing new and not
 * `always`), or NotImplemented (a value the Python encoder must take) */
static PyObject *ipfix_one(ConnObject *conn, int reason, double now, int always, PyObject *done) {
    const SideObject *c = conn->c, *s = conn->s;
    uint64_t counts[8] = {c->packets, s->packets, c->ip_bytes, s->ip_bytes, c->payload, s->payload,
                          c->retrans_bytes, s->retrans_bytes};
    uint64_t before[8] = {0};
    double start = conn->first;
    PyObject *key = PyLong_FromLongLong(conn->id);
    if (key == NULL)
        return NULL;
    PyObject *previous = PyDict_GetItemWithError(done, key);  /* borrowed */
    if (previous == NULL && PyErr_Occurred()) {
        Py_DECREF(key);
        return NULL;
    }
    if (previous != NULL) {
        if (!PyBytes_CheckExact(previous) || PyBytes_GET_SIZE(previous) != IPFIX_DONE_SIZE) {
            Py_DECREF(key);  /* the Python encoder's entry (it made this connection's last record): its business */
            Py_RETURN_NOTIMPLEMENTED;
        }
        const char *data = PyBytes_AS_STRING(previous);
        memcpy(before, data, sizeof before);
        memcpy(&start, data + 64, sizeof start);
        if (!always && memcmp(before, counts, sizeof counts) == 0) {
            Py_DECREF(key);
            Py_RETURN_NONE;
        }
    }
    uint64_t delta[8];
    for (int i = 0; i < 8; i++)
        delta[i] = counts[i] >= before[i] ? counts[i] - before[i] : 0;
    unsigned char out[2 * 16 + 61 + 4 * 255 + 38 + 16];
    Py_ssize_t size = ipfix_encode(conn, reason, start, delta, out);
    if (size < 0) {
        Py_DECREF(key);
        Py_RETURN_NOTIMPLEMENTED;
    }
    double last = conn->last, end = last >= start ? last : start;
    char state[IPFIX_DONE_SIZE];
    memcpy(state, counts, sizeof counts);
    memcpy(state + 64, &end, sizeof end);
    memcpy(state + 72, &now, sizeof now);
    PyObject *entry = PyBytes_FromStringAndSize(state, IPFIX_DONE_SIZE);
    PyObject *record = entry ? PyBytes_FromStringAndSize((const char *)out, size) : NULL;
    int failed = record == NULL || PyDict_SetItem(done, key, entry) < 0;
    Py_DECREF(key);
    Py_XDECREF(entry);
    if (failed) {
        Py_XDECREF(record);
        return NULL;
    }
    PyObject *item = Py_BuildValue("(dON)", now, conn->c_addr_len == 4 ? Py_True : Py_False, record);
    return item;
}

static PyObject *py_ipfix_record(PyObject *module, PyObject *args) {
    PyObject *obj, *done;
    int reason, always;
    double now;
    if (!PyArg_ParseTuple(args, "O!idpO!", &ConnType, &obj, &reason, &now, &always, &PyDict_Type, &done))
        return NULL;
    return ipfix_one((ConnObject *)obj, reason, now, always, done);
}

/* One connection's entry in a sweep or at the end: a new reference to its record, to None (nothing to send), to
 * NotImplemented (a value the Python encoder must take), or NULL on error. */
typedef PyObject *(*IpfixPick)(ConnObject *conn, const void *ctx);

/* The loop ipfix_sweep and ipfix_final share: `pick` over each connection of `conns`; a list of the records, and of
 * the connections the Python encoder must take (anything not a compiled connection, and NotImplemented), as
 * themselves. */
static PyObject *ipfix_collect(PyObject *conns, IpfixPick pick, const void *ctx) {
    PyObject *out = PyList_New(0), *it = PyObject_GetIter(conns), *item;
    if (out == NULL || it == NULL)
        goto fail;
    while ((item = PyIter_Next(it)) != NULL) {
        PyObject *made = PyObject_TypeCheck(item, &ConnType) ? pick((ConnObject *)item, ctx) : Py_NewRef(item);
        if (made == Py_NotImplemented)
            Py_SETREF(made, Py_NewRef(item));
        Py_DECREF(item);
        if (made == NULL)
            goto fail;
        int failed = made != Py_None && PyList_Append(out, made) < 0;
        Py_DECREF(made);
        if (failed)
            goto fail;
    }
    if (PyErr_Occurred())
        goto fail;
    Py_DECREF(it);
    return out;
fail:
    Py_XDECREF(it);
    Py_XDECREF(out);
    return NULL;
}

typedef struct {
    PyObject *done;
    double now, cutoff;
    int reason;
} SweepCtx;

static PyObject *sweep_pick(ConnObject *conn, const void *ctx) {
    const SweepCtx *x = ctx;
    if (conn->ended != Py_None || conn->first > x->cutoff)
        Py_RETURN_NONE;
    PyObject *key = PyLong_FromLongLong(conn->id);
    if (key == NULL)
        return NULL;
    PyObject *previous = PyDict_GetItemWithError(x->done, key);
    Py_DECREF(key);
    if (previous == NULL && PyErr_Occurred())
        return NULL;
    double sent = -INFINITY;
    if (previous != NULL && PyBytes_CheckExact(previous) && PyBytes_GET_SIZE(previous) == IPFIX_DONE_SIZE)
        memcpy(&sent, PyBytes_AS_STRING(previous) + 72, sizeof sent);
    if (previous != NULL && sent > x->cutoff)
        Py_RETURN_NONE;
    return ipfix_one(conn, x->reason, x->now, 0, x->done);
}

/* the active-timeout sweep (FlowExporter.tick): for each open connection that started before `cutoff` and whose
 * last record went out before it (or none did), its record with flowEndReason `reason`; a list of the records
 * (and of the connections the Python encoder must take, as themselves) */
static PyObject *py_ipfix_sweep(PyObject *module, PyObject *args) {
    PyObject *conns;
    SweepCtx x;
    if (!PyArg_ParseTuple(args, "OddiO!", &conns, &x.now, &x.cutoff, &x.reason, &PyDict_Type, &x.done))
        return NULL;
    return ipfix_collect(conns, sweep_pick, &x);
}

typedef struct {
    PyObject *done, *final, *reasons;
    double now;
} FinalCtx;

static PyObject *final_pick(ConnObject *conn, const void *ctx) {
    const FinalCtx *x = ctx;
    if (conn->ended == Py_None)
        return ipfix_one(conn, 4, x->now, 1, x->done);
    long reason = 3;
    PyObject *mapped = PyDict_GetItemWithError(x->reasons, conn->ended);
    if (mapped != NULL) {
        reason = PyLong_AsLong(mapped);
        if (reason == -1 && PyErr_Occurred())
            return NULL;
    } else if (PyErr_Occurred()) {
        return NULL;
    }
    PyObject *key = PyLong_FromLongLong(conn->id);
    int sent_end = key == NULL ? -1 : PySet_Contains(x->final, key);
    Py_XDECREF(key);
    if (sent_end < 0)
        return NULL;
    return ipfix_one(conn, (int)reason, conn->last, !sent_end, x->done);
}

/* the end of the capture (FlowExporter.finish): every connection of `conns` goes out, an open one with
 * flowEndReason 4 (forced end) at `now`, an ended one at its last packet with the reason its end maps to in
 * `reasons` (3 if none), unless it is in `final` (its end record went out) and nothing came since. A list of the
 * records, and of the connections the Python encoder must take, as themselves. */
static PyObject *py_ipfix_final(PyObject *module, PyObject *args) {
    PyObject *conns;
    FinalCtx x;
    if (!PyArg_ParseTuple(args, "OdO!O!O!", &conns, &x.now, &PyDict_Type, &x.done, &PySet_Type, &x.final,
                          &PyDict_Type, &x.reasons))
        return NULL;
    return ipfix_collect(conns, final_pick, &x);
}

/* The tracker's hooks for the export, in C (FlowExporter.attach with the compiled core): `state` is the tuple
 * (done, final, reasons, queue, limit, sender, python_end, python_remove, chained_remove). A record goes straight
 * into the sender's queue (a deque; when it holds `limit`, the record is dropped and sender.dropped counted); a
 * connection the C encoder leaves to Python goes to python_end / python_remove. */
static int ipfix_hook_state(PyObject *state, PyObject **items) {
    if (!PyTuple_Check(state) || PyTuple_GET_SIZE(state) != 9 || !PyDict_Check(PyTuple_GET_ITEM(state, 0)) ||
        !PySet_Check(PyTuple_GET_ITEM(state, 1)) || !PyDict_Check(PyTuple_GET_ITEM(state, 2))) {
        PyErr_SetString(PyExc_TypeError, "ipfix hook: not the exporter's state tuple");
        return -1;
    }
    for (int i = 0; i < 9; i++)
        items[i] = PyTuple_GET_ITEM(state, i);
    return 0;
}

/* the record `made` (a tuple) into the queue, or counted as dropped */
static int ipfix_enqueue(PyObject **st, PyObject *made) {
    Py_ssize_t size = PyObject_Length(st[3]);
    long limit = PyLong_AsLong(st[4]);
    if (size < 0 || (limit == -1 && PyErr_Occurred()))
        return -1;
    if (size >= limit) {
        PyObject *dropped = PyObject_GetAttrString(st[5], "dropped");
        if (dropped == NULL)
            return -1;
        long long n = PyLong_AsLongLong(dropped);
        Py_DECREF(dropped);
        if (n == -1 && PyErr_Occurred())
            return -1;
        PyObject *more = PyLong_FromLongLong(n + 1);
        int failed = more == NULL || PyObject_SetAttrString(st[5], "dropped", more) < 0;
        Py_XDECREF(more);
        return failed ? -1 : 0;
    }
    PyObject *r = PyObject_CallMethodOneArg(st[3], s_append, made);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static long ipfix_reason(PyObject *reasons, PyObject *ended) {
    PyObject *mapped = PyDict_GetItemWithError(reasons, ended);
    if (mapped == NULL)
        return PyErr_Occurred() ? -1 : 3;
    return PyLong_AsLong(mapped);
}

/* one connection's record: queued, nothing (None), or made by the Python path (`python`(conn, reason, now,
 * always)) */
static PyObject *ipfix_route(PyObject **st, PyObject *python, ConnObject *conn, int reason, double now, int always) {
    PyObject *made = ipfix_one(conn, reason, now, always, st[0]);
    if (made == NULL)
        return NULL;
    int failed = 0;
    if (made == Py_NotImplemented) {
        PyObject *r = PyObject_CallFunction(python, "Oidi", (PyObject *)conn, reason, now, always);
        failed = r == NULL;
        Py_XDECREF(r);
    } else if (made != Py_None) {
        failed = ipfix_enqueue(st, made) < 0;
    }
    Py_DECREF(made);
    if (failed)
        return NULL;
    Py_RETURN_NONE;
}

/* FlowExporter.on_end: the end record (always), at the connection's end time (or its last packet) */
static PyObject *py_ipfix_on_end(PyObject *module, PyObject *args) {
    PyObject *state, *obj, *st[9];
    if (!PyArg_ParseTuple(args, "OO!", &state, &ConnType, &obj) || ipfix_hook_state(state, st) < 0)
        return NULL;
    ConnObject *conn = (ConnObject *)obj;
    long reason = conn->ended == Py_None ? 3 : ipfix_reason(st[2], conn->ended);
    if (reason == -1 && PyErr_Occurred())
        return NULL;
    double end = isnan(conn->end_ts) ? conn->last : conn->end_ts;
    PyObject *done = ipfix_route(st, st[6], conn, (int)reason, end, 1);
    if (done == NULL)
        return NULL;
    PyObject *key = PyLong_FromLongLong(conn->id);
    int failed = key == NULL || PySet_Add(st[1], key) < 0;
    Py_XDECREF(key);
    if (failed) {
        Py_DECREF(done);
        return NULL;
    }
    return done;
}

/* FlowExporter.on_remove: the chained hook first; then one more record if packets came after the end record
 * (or a forced end for one that never ended); its state forgotten */
static PyObject *py_ipfix_on_remove(PyObject *module, PyObject *args) {
    PyObject *state, *obj, *st[9];
    if (!PyArg_ParseTuple(args, "OO!", &state, &ConnType, &obj) || ipfix_hook_state(state, st) < 0)
        return NULL;
    ConnObject *conn = (ConnObject *)obj;
    if (st[8] != Py_None) {
        PyObject *r = PyObject_CallOneArg(st[8], obj);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    PyObject *key = PyLong_FromLongLong(conn->id);
    if (key == NULL)
        return NULL;
    int sent_end = PySet_Discard(st[1], key);
    PyObject *routed = Py_NewRef(Py_None);
    if (sent_end < 0) {
        Py_CLEAR(routed);
    } else if (sent_end || conn->ended == Py_None) {
        Py_CLEAR(routed);
        long reason = sent_end ? (conn->ended == Py_None ? 3 : ipfix_reason(st[2], conn->ended)) : 4;
        if (!(reason == -1 && PyErr_Occurred()))
            routed = ipfix_route(st, st[7], conn, (int)reason, conn->last, !sent_end);
    }
    if (routed != NULL && PyDict_DelItem(st[0], key) < 0) {
        if (PyErr_ExceptionMatches(PyExc_KeyError))
            PyErr_Clear();
        else
            Py_CLEAR(routed);
    }
    Py_DECREF(key);
    return routed;
}

/* export.ipfix.messages in C, for the sender thread: `pending` (a list of (export time, is IPv4, record bytes))
 * packed into messages of at most `limit` bytes (a record larger than that still goes, alone), `templates` (a
 * template set, or None) leading the first; each message's sequence number counts the data records before it.
 * Returns [(message, records in it)]; the export time is the latest of the records' (whole seconds). */
static int ipfix_emit(PyObject *out, unsigned char *buf, size_t len, uint32_t export_time, uint32_t sequence,
                      uint32_t domain, long count) {
    ip_be16(buf, 10);
    ip_be16(buf + 2, (uint32_t)len);
    ip_be32(buf + 4, export_time);
    ip_be32(buf + 8, sequence);
    ip_be32(buf + 12, domain);
    PyObject *item = Py_BuildValue("(y#l)", (const char *)buf, (Py_ssize_t)len, count);
    if (item == NULL)
        return -1;
    int failed = PyList_Append(out, item) < 0;
    Py_DECREF(item);
    return failed ? -1 : 0;
}

static PyObject *py_ipfix_messages(PyObject *module, PyObject *args) {
    PyObject *pending, *templates;
    unsigned long long sequence_in, domain_in;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "O!KKOn", &PyList_Type, &pending, &sequence_in, &domain_in, &templates, &limit))
        return NULL;
    if (templates != Py_None && !PyBytes_Check(templates)) {
        PyErr_SetString(PyExc_TypeError, "templates: bytes or None");
        return NULL;
    }
    uint32_t sequence = (uint32_t)sequence_in, domain = (uint32_t)domain_in;
    Py_ssize_t n = PyList_GET_SIZE(pending);
    double latest = -INFINITY;
    size_t biggest = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(pending, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3 || !PyBytes_Check(PyTuple_GET_ITEM(item, 2))) {
            PyErr_SetString(PyExc_TypeError, "pending: (export time, is IPv4, bytes) tuples");
            return NULL;
        }
        double t = PyFloat_AsDouble(PyTuple_GET_ITEM(item, 0));
        if (t == -1.0 && PyErr_Occurred())
            return NULL;
        if (t > latest)
            latest = t;
        size_t size = (size_t)PyBytes_GET_SIZE(PyTuple_GET_ITEM(item, 2));
        if (size > biggest)
            biggest = size;
    }
    /* int(max(t)) & 0xFFFFFFFF, as Python's header() */
    uint32_t export_time = 0;
    if (n && isfinite(latest)) {
        double whole = trunc(latest);
        export_time = (uint32_t)(int64_t)fmod(whole, 4294967296.0);
        if (whole < 0 && export_time)
            export_time = (uint32_t)(int64_t)whole;
    }
    size_t tlen = templates == Py_None ? 0 : (size_t)PyBytes_GET_SIZE(templates);
    size_t cap = 16 + tlen + (size_t)(limit > 0 ? limit : 0) + biggest + 8;
    unsigned char *buf = PyMem_Malloc(cap);
    PyObject *out = PyList_New(0);
    if (buf == NULL || out == NULL) {
        PyMem_Free(buf);
        Py_XDECREF(out);
        return PyErr_NoMemory();
    }
    size_t size = 16, set_at = 0;       /* the message so far; where the open set's header is (0: none) */
    int has_sets = 0, current = -1;     /* a set in this message (templates count); the open set's family */
    long count = 0;
    if (tlen) {
        memcpy(buf + 16, PyBytes_AS_STRING(templates), tlen);
        size += tlen;
        has_sets = 1;
    }
#define CLOSE_SET()                                                                                             \
    do {                                                                                                        \
        if (set_at) {                                                                                           \
            ip_be16(buf + set_at, current ? 256 : 257);                                                         \
            ip_be16(buf + set_at + 2, (uint32_t)(size - set_at));                                               \
            set_at = 0;                                                                                         \
        }                                                                                                       \
    } while (0)
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(pending, i);
        int v4 = PyObject_IsTrue(PyTuple_GET_ITEM(item, 1));
        if (v4 < 0)
            goto fail;
        PyObject *record = PyTuple_GET_ITEM(item, 2);
        size_t rlen = (size_t)PyBytes_GET_SIZE(record);
        size_t need = rlen + ((v4 != current || !set_at) ? 4 : 0);
        if (size + need > (size_t)limit && (count || has_sets)) {
            CLOSE_SET();
            if (ipfix_emit(out, buf, size, export_time, sequence, domain, count) < 0)
                goto fail;
            sequence += (uint32_t)count;
            size = 16;
            count = 0;
            has_sets = 0;
            need = rlen + 4;
        }
        if (v4 != current || !set_at) {
            CLOSE_SET();
            current = v4;
            set_at = size;
            size += 4;
            has_sets = 1;
        }
        memcpy(buf + size, PyBytes_AS_STRING(record), rlen);
        size += rlen;
        count++;
    }
    CLOSE_SET();
#undef CLOSE_SET
    if (has_sets && ipfix_emit(out, buf, size, export_time, sequence, domain, count) < 0)
        goto fail;
    PyMem_Free(buf);
    return out;
fail:
    PyMem_Free(buf);
    Py_DECREF(out);
    return NULL;
}

/* the metrics' gauge of open connections by state pair (Tracker.state_pairs): {"CLIENT/SERVER": n} over the
 * connections not ended; None if one is not the compiled core's (the Python loop counts then) */
static PyObject *py_state_pairs(PyObject *module, PyObject *conns) {
    Py_ssize_t counts[N_STATES][N_STATES];
    memset(counts, 0, sizeof counts);
    PyObject *it = PyObject_GetIter(conns), *item;
    if (it == NULL)
        return NULL;
    while ((item = PyIter_Next(it)) != NULL) {
        if (!PyObject_TypeCheck(item, &ConnType)) {
            Py_DECREF(item);
            Py_DECREF(it);
            Py_RETURN_NONE;
        }
        ConnObject *conn = (ConnObject *)item;
        if (conn->ended == Py_None && conn->c->state < N_STATES && conn->s->state < N_STATES)
            counts[conn->c->state][conn->s->state]++;
        Py_DECREF(item);
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return NULL;
    PyObject *out = PyDict_New();
    if (out == NULL)
        return NULL;
    for (int c = 0; c < N_STATES; c++)
        for (int s = 0; s < N_STATES; s++) {
            if (!counts[c][s])
                continue;
            PyObject *n = PyLong_FromSsize_t(counts[c][s]);
            PyObject *name = n ? PyUnicode_FromFormat("%s/%s", STATE_NAMES[c], STATE_NAMES[s]) : NULL;
            int failed = name == NULL || PyDict_SetItem(out, name, n) < 0;
            Py_XDECREF(n);
            Py_XDECREF(name);
            if (failed) {
                Py_DECREF(out);
                return NULL;
            }
        }
    return out;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Row columns (the TUI's bulk hand-off, engine/rowcols.py): a changed connection's row as one fixed-size record
 * filled straight from the C structs, many at a time, into a numpy array; the problems lens's signals of such
 * records (problems.signals), in C without the interpreter lock. The record's fields are engine.records.ConnRow's,
 * under the same names (row_layout lists them with their offsets; rowcols.py builds the numpy dtype from it).
 * ------------------------------------------------------------------------------------------------------------ */

#define ROW_HISTORY 32
#define ROW_VLANS 2

typedef struct {
    int64_t id;
    double first, last, end_ts, rtt_s, rtt_client, rtt_server;
    double since_c, since_s, zw_since_c, zw_since_s, last_data_c, last_data_s, last_ts_c, last_ts_s;
    uint64_t packets_c2s, packets_s2c, bytes_c2s, bytes_s2c, payload_c2s, payload_s2c;
    uint64_t retrans_bytes_c2s, retrans_bytes_s2c, retrans_packets;
    uint32_t retrans_packets_c2s, retrans_packets_s2c, ooo_c2s, ooo_s2c, zero_win_c2s, zero_win_s2c;
    uint32_t suspicious_rst, odd_rst, bad_flags, bad_checksum, transitions, rst_alerts;
    int32_t shard;
    uint32_t vlan[ROW_VLANS];
    uint16_t c_port, s_port;
    uint8_t c_addr[16], s_addr[16];
    uint8_t c_len, s_len, cstate, sstate, vlan_n, midstream, ended, rst_by, zeek, hist_len, odd;
    char history[ROW_HISTORY];
} RowRec;

/* Zeek's conn_state codes: engine.rowcols.ZEEK_NAMES in this order */
enum { ZK_S0, ZK_S1, ZK_SF, ZK_REJ, ZK_S2, ZK_S3, ZK_RSTO, ZK_RSTR, ZK_RSTOS0, ZK_RSTRH, ZK_SH, ZK_SHR, ZK_OTH };

/* zeek.conn_state, its history test `^\^?S[^HAFGIQ]*R` included */
static int zeek_code(const ConnObject *conn) {
    int o = conn->c->zstate, r = conn->s->zstate;
    int o_in = o == Z_INACTIVE || o == Z_PARTIAL, r_in = r == Z_INACTIVE || r == Z_PARTIAL;
    if (r == Z_RESET) {
        if (o == Z_SYN_SENT || o == Z_SYN_ACK_SENT || (o == Z_RESET && conn->c->payload == 0 && conn->s->payload == 0))
            return ZK_REJ;
        return o_in ? ZK_RSTRH : ZK_RSTR;
    }
    if (o == Z_RESET) {
        if (!r_in)
            return ZK_RSTO;
        const char *h = conn->hist ? conn->hist : "";
        uint32_t n = conn->hist_len, i = 0;
        if (i < n && h[i] == '^')
            i++;
        if (i < n && h[i] == 'S') {
            for (i++; i < n; i++) {
                if (h[i] == 'R')
                    return ZK_RSTOS0;
                if (strchr("HAFGIQ", h[i]))
                    break;
            }
        }
        return ZK_OTH;
    }
    if (o == Z_CLOSED && r == Z_CLOSED)
        return ZK_SF;
    if (o == Z_CLOSED)
        return r_in ? ZK_SH : ZK_S2;
    if (r == Z_CLOSED)
        return o_in ? ZK_SHR : ZK_S3;
    if (o == Z_SYN_SENT && r == Z_INACTIVE)
        return ZK_S0;
    if (o == Z_ESTABLISHED && r == Z_ESTABLISHED)
        return ZK_S1;
    return ZK_OTH;
}

/* the index (1-based) of a text in a tuple of texts; 0 for None; -1 if not there (the record needs Python) */
/* row_py by looks at pointers only (no interpreter lock needed: the texts are the names' own objects, no VLAN
 * tag); -1 when that is not enough */
static int name_code_quick(PyObject *value, PyObject *names) {
    if (value == Py_None)
        return 0;
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    for (Py_ssize_t i = 0; i < n; i++)
        if (PyTuple_GET_ITEM(names, i) == value)
            return (int)i + 1;
    return -1;
}

static int name_code(PyObject *value, PyObject *names) {
    int code = name_code_quick(value, names);
    if (code >= 0 || !PyUnicode_Check(value))
        return code;
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    for (Py_ssize_t i = 0; i < n; i++) {
        int eq = PyUnicode_Compare(PyTuple_GET_ITEM(names, i), value);
        if (eq == 0)
            return (int)i + 1;
        if (eq == -1 && PyErr_Occurred())
            PyErr_Clear();
    }
    return -1;
}

/* what a record takes from a connection's Python objects (its end and RST texts, its VLAN tags): read with the
 * interpreter lock held, before the rest of the record is filled without it (row_fill) */
typedef struct {
    uint8_t ended, rst_by, vlan_n, odd;
    uint32_t vlan[ROW_VLANS];
} RowPy;

static void row_py(RowPy *p, const ConnObject *conn, PyObject *ended_names, PyObject *rst_names) {
    memset(p, 0, sizeof *p);
    int odd = 0;
    int code = name_code(conn->ended, ended_names);
    odd |= code < 0;
    p->ended = code < 0 ? 0 : (uint8_t)code;
    code = name_code(conn->rst_by, rst_names);
    odd |= code < 0;
    p->rst_by = code < 0 ? 0 : (uint8_t)code;
    if (!PyTuple_Check(conn->vlan) || PyTuple_GET_SIZE(conn->vlan) > ROW_VLANS) {
        odd = 1;
    } else {
        p->vlan_n = (uint8_t)PyTuple_GET_SIZE(conn->vlan);
        for (int i = 0; i < p->vlan_n; i++) {
            PyObject *tag = PyTuple_GET_ITEM(conn->vlan, i);
            long v = PyLong_CheckExact(tag) ? PyLong_AsLong(tag) : -1;
            if (v < 0 || v > (long)UINT32_MAX) {
                PyErr_Clear();
                odd = 1;
                break;
            }
            p->vlan[i] = (uint32_t)v;
        }
    }
    p->odd = (uint8_t)odd;
}


static int row_py_quick(RowPy *p, const ConnObject *conn, PyObject *ended_names, PyObject *rst_names) {
    int ended = name_code_quick(conn->ended, ended_names), rst = name_code_quick(conn->rst_by, rst_names);
    if (ended < 0 || rst < 0 || !PyTuple_CheckExact(conn->vlan) || PyTuple_GET_SIZE(conn->vlan) != 0)
        return -1;
    memset(p, 0, sizeof *p);
    p->ended = (uint8_t)ended;
    p->rst_by = (uint8_t)rst;
    return 0;
}

/* the rest of a record, from the C structs only: runs without the interpreter lock (the engine's thread, which
 * alone changes connections, is the caller; the sequence holds them) */
static void row_fill(RowRec *r, const ConnObject *conn, const RowPy *p) {
    const SideObject *c = conn->c, *s = conn->s;
    memset(r, 0, sizeof *r);
    r->id = conn->id;
    r->shard = conn->shard;
    r->first = conn->first;
    r->last = conn->last;
    r->end_ts = conn->end_ts;
    r->rtt_client = conn->rtt_client;
    r->rtt_server = conn->rtt_server;
    r->rtt_s = isnan(conn->rtt_client) || isnan(conn->rtt_server) ? -1.0 : conn->rtt_client + conn->rtt_server;
    r->since_c = c->since;
    r->since_s = s->since;
    r->zw_since_c = c->zw_since;
    r->zw_since_s = s->zw_since;
    r->last_data_c = c->last_data_ts;
    r->last_data_s = s->last_data_ts;
    r->last_ts_c = c->last_ts;
    r->last_ts_s = s->last_ts;
    r->packets_c2s = c->packets;
    r->packets_s2c = s->packets;
    r->bytes_c2s = c->ip_bytes;
    r->bytes_s2c = s->ip_bytes;
    r->payload_c2s = c->payload;
    r->payload_s2c = s->payload;
    r->retrans_bytes_c2s = c->retrans_bytes;
    r->retrans_bytes_s2c = s->retrans_bytes;
    r->retrans_packets_c2s = c->retrans;
    r->retrans_packets_s2c = s->retrans;
    r->retrans_packets = (uint64_t)c->retrans + s->retrans;
    r->ooo_c2s = c->ooo;
    r->ooo_s2c = s->ooo;
    r->zero_win_c2s = c->zero_win;
    r->zero_win_s2c = s->zero_win;
    r->suspicious_rst = conn->suspicious_rst;
    r->odd_rst = conn->odd_rst;
    r->rst_alerts = conn->suspicious_rst + conn->odd_rst;
    r->bad_flags = conn->bad_flags;
    r->bad_checksum = conn->bad_checksum;
    r->transitions = (uint32_t)conn->log_n + conn->transitions_dropped;
    r->c_port = conn->c_port;
    r->s_port = conn->s_port;
    memcpy(r->c_addr, conn->c_addr, 16);
    memcpy(r->s_addr, conn->s_addr, 16);
    r->c_len = conn->c_addr_len;
    r->s_len = conn->s_addr_len;
    r->cstate = c->state;
    r->sstate = s->state;
    r->midstream = conn->midstream ? 1 : 0;
    r->zeek = (uint8_t)zeek_code(conn);
    int odd = p->odd || (uint64_t)conn->suspicious_rst + conn->odd_rst > UINT32_MAX;
    if (conn->hist_len > ROW_HISTORY) {
        odd = 1;
    } else {
        r->hist_len = (uint8_t)conn->hist_len;
        if (conn->hist_len)
            memcpy(r->history, conn->hist, conn->hist_len);
    }
    r->ended = p->ended;
    r->rst_by = p->rst_by;
    r->vlan_n = p->vlan_n;
    for (int i = 0; i < p->vlan_n; i++)
        r->vlan[i] = p->vlan[i];
    r->odd = (uint8_t)odd;
}

static int writable(PyObject *obj, Py_buffer *view, Py_ssize_t need, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    if (view->len < need) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_ValueError, "%s is too small", what);
        return -1;
    }
    return 0;
}

static PyObject *py_row_cols(PyObject *module, PyObject *args) {
    PyObject *conns, *out, *ended_names, *rst_names;
    if (!PyArg_ParseTuple(args, "OOO!O!", &conns, &out, &PyTuple_Type, &ended_names, &PyTuple_Type, &rst_names))
        return NULL;
    PyObject *seq = PySequence_Fast(conns, "row_cols takes a sequence of connections");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    Py_buffer view;
    if (writable(out, &view, n * (Py_ssize_t)sizeof(RowRec), "the records' buffer") < 0) {
        Py_DECREF(seq);
        return NULL;
    }
    RowRec *recs = (RowRec *)view.buf;
    PyObject **items = PySequence_Fast_ITEMS(seq);
    Py_ssize_t odd = 0;
    /* the records without the interpreter lock (most of the work, and the first touch of their memory): the face's
     * thread runs meanwhile. A record whose Python parts need more than a look at pointers (a text not one of the
     * names' objects, VLAN tags, a connection made in Python) is filled after, with the lock. */
    Py_ssize_t *later = n ? PyMem_RawMalloc((size_t)n * sizeof *later) : NULL, nlater = 0;
    if (n && later == NULL) {
        PyBuffer_Release(&view);
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        RowPy p;
        if (!Py_IS_TYPE(items[i], &ConnType) || row_py_quick(&p, (ConnObject *)items[i], ended_names, rst_names) < 0) {
            later[nlater++] = i;
            continue;
        }
        row_fill(&recs[i], (ConnObject *)items[i], &p);
        odd += recs[i].odd;
    }
    Py_END_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < nlater; k++) {
        Py_ssize_t i = later[k];
        if (!PyObject_TypeCheck(items[i], &ConnType)) {  /* a Python connection: its row is made in Python */
            memset(&recs[i], 0, sizeof recs[i]);
            recs[i].id = -1;
            recs[i].odd = 1;
            odd++;
            continue;
        }
        RowPy p;
        row_py(&p, (ConnObject *)items[i], ended_names, rst_names);
        row_fill(&recs[i], (ConnObject *)items[i], &p);
        odd += recs[i].odd;
    }
    PyMem_RawFree(later);
    PyBuffer_Release(&view);
    Py_DECREF(seq);
    return PyLong_FromSsize_t(odd);
}

/* the signals' kinds (problems.KINDS, in that order), and the measures after them */
enum { SG_CLOSE_WAIT, SG_FIN_WAIT_2, SG_UNANSWERED, SG_REFUSED, SG_RESET, SG_SUSPICIOUS, SG_ONE_WAY, SG_RETRANS,
       SG_ZERO_WINDOW, SG_HALF_OPEN, SG_ONE_WAY_V, SG_RETRANS_V, SG_HALF_OPEN_V, SG_END, SG_WIDTH };

/* problems.signals of one record: out gets SG_WIDTH numbers (NaN: none); 0 when the record has none at all */
static int row_signals(const RowRec *r, double *out) {
    int cs = r->cstate, ss = r->sstate;
    uint64_t pc = r->packets_c2s, ps = r->packets_s2c;
    for (int k = 0; k < SG_WIDTH; k++)
        out[k] = NAN;
    if (cs == ESTABLISHED && ss == ESTABLISHED && r->ended == 0 && !r->rst_alerts && pc && ps &&
        !r->retrans_bytes_c2s && !r->retrans_bytes_s2c && isnan(r->zw_since_c) && isnan(r->zw_since_s) &&
        r->last_data_s <= r->last_ts_c && r->last_data_c <= r->last_ts_s)
        return 0;
    if (cs == CLOSE_WAIT)
        out[SG_CLOSE_WAIT] = ss == CLOSE_WAIT && r->since_s < r->since_c ? r->since_s : r->since_c;
    else if (ss == CLOSE_WAIT)
        out[SG_CLOSE_WAIT] = r->since_s;
    if (cs == FIN_WAIT_2)
        out[SG_FIN_WAIT_2] = ss == FIN_WAIT_2 && r->since_s < r->since_c ? r->since_s : r->since_c;
    else if (ss == FIN_WAIT_2)
        out[SG_FIN_WAIT_2] = r->since_s;
    if (cs == SYN_SENT && ps == 0)
        out[SG_UNANSWERED] = r->first;
    double ended_at = isnan(r->end_ts) ? r->last : r->end_ts;
    /* refused: a RST answered the SYN; or no packet back and the client's side closed with no RST, no FIN (ended
     * 1 = "closed", engine/rowcols.py ENDED_NAMES): only an ICMP unreachable quoting its SYN does that */
    if (r->zeek == ZK_REJ || (cs == CLOSED && ss == CLOSED && ps == 0 && pc && r->rst_by == 0 &&
                              r->zeek == ZK_S0 && r->ended == 1))
        out[SG_REFUSED] = ended_at;
    else if (r->rst_by != 0 && (r->zeek == ZK_RSTO || r->zeek == ZK_RSTR))
        out[SG_RESET] = ended_at;
    if (r->rst_alerts)
        out[SG_SUSPICIOUS] = r->last;
    if ((pc == 0) != (ps == 0) && (cs >= ESTABLISHED || ss >= ESTABLISHED)) {
        out[SG_ONE_WAY] = r->first;
        out[SG_ONE_WAY_V] = r->last - r->first;
    }
    double share = 0.0;
    if (r->payload_c2s && r->retrans_bytes_c2s)
        share = (double)r->retrans_bytes_c2s / (double)r->payload_c2s;
    if (r->payload_s2c && r->retrans_bytes_s2c &&
        (double)r->retrans_bytes_s2c / (double)r->payload_s2c > share)
        share = (double)r->retrans_bytes_s2c / (double)r->payload_s2c;
    if (share > 0.0) {
        out[SG_RETRANS] = r->first;
        out[SG_RETRANS_V] = share;
    }
    if (r->ended == 0) {
        if (!isnan(r->zw_since_c))
            out[SG_ZERO_WINDOW] = !isnan(r->zw_since_s) && r->zw_since_s < r->zw_since_c ? r->zw_since_s
                                                                                        : r->zw_since_c;
        else if (!isnan(r->zw_since_s))
            out[SG_ZERO_WINDOW] = r->zw_since_s;
    }
    if (pc && ps) {
        double best = 0.0, half_open = NAN;
        double gone = cs == CLOSED || cs == TIME_WAIT ? r->since_c : r->last_ts_c;
        if (r->last_data_s - gone > best) {
            best = r->last_data_s - gone;
            half_open = gone;
        }
        gone = ss == CLOSED || ss == TIME_WAIT ? r->since_s : r->last_ts_s;
        if (r->last_data_c - gone > best) {
            best = r->last_data_c - gone;
            half_open = gone;
        }
        if (best > 0.0) {
            out[SG_HALF_OPEN] = half_open;
            out[SG_HALF_OPEN_V] = best;
        }
    }
    out[SG_END] = r->end_ts;
    return 1;
}

static PyObject *py_row_signals(PyObject *module, PyObject *args) {
    PyObject *recs_obj, *out_obj, *some_obj;
    if (!PyArg_ParseTuple(args, "OOO", &recs_obj, &out_obj, &some_obj))
        return NULL;
    Py_buffer recs, out, some;
    if (PyObject_GetBuffer(recs_obj, &recs, PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    Py_ssize_t n = recs.len / (Py_ssize_t)sizeof(RowRec);
    if (recs.len % (Py_ssize_t)sizeof(RowRec) != 0) {
        PyBuffer_Release(&recs);
        PyErr_SetString(PyExc_ValueError, "the records are not in row_layout's layout");
        return NULL;
    }
    if (writable(out_obj, &out, n * SG_WIDTH * (Py_ssize_t)sizeof(double), "the signals' buffer") < 0) {
        PyBuffer_Release(&recs);
        return NULL;
    }
    if (writable(some_obj, &some, n, "the flags' buffer") < 0) {
        PyBuffer_Release(&recs);
        PyBuffer_Release(&out);
        return NULL;
    }
    const RowRec *r = (const RowRec *)recs.buf;
    double *o = (double *)out.buf;
    unsigned char *flag = (unsigned char *)some.buf;
    Py_ssize_t found = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        flag[i] = (unsigned char)row_signals(&r[i], o + i * SG_WIDTH);
        found += flag[i];
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&recs);
    PyBuffer_Release(&out);
    PyBuffer_Release(&some);
    return PyLong_FromSsize_t(found);
}

/* the record's layout: (size, ((name, numpy type, offset), ...)) */
static PyObject *py_row_layout(PyObject *module, PyObject *unused) {
#define F(NAME, TYPE) {#NAME, TYPE, offsetof(RowRec, NAME)}
    static const struct { const char *name, *type; size_t offset; } fields[] = {
        F(id, "<i8"), F(first, "<f8"), F(last, "<f8"), F(end_ts, "<f8"), F(rtt_s, "<f8"), F(rtt_client, "<f8"),
        F(rtt_server, "<f8"), F(since_c, "<f8"), F(since_s, "<f8"), F(zw_since_c, "<f8"), F(zw_since_s, "<f8"),
        F(last_data_c, "<f8"), F(last_data_s, "<f8"), F(last_ts_c, "<f8"), F(last_ts_s, "<f8"),
        F(packets_c2s, "<u8"), F(packets_s2c, "<u8"), F(bytes_c2s, "<u8"), F(bytes_s2c, "<u8"),
        F(payload_c2s, "<u8"), F(payload_s2c, "<u8"), F(retrans_bytes_c2s, "<u8"), F(retrans_bytes_s2c, "<u8"),
        F(retrans_packets, "<u8"), F(retrans_packets_c2s, "<u4"), F(retrans_packets_s2c, "<u4"),
        F(ooo_c2s, "<u4"), F(ooo_s2c, "<u4"), F(zero_win_c2s, "<u4"), F(zero_win_s2c, "<u4"),
        F(suspicious_rst, "<u4"), F(odd_rst, "<u4"), F(bad_flags, "<u4"), F(bad_checksum, "<u4"),
        F(transitions, "<u4"), F(rst_alerts, "<u4"), F(shard, "<i4"), F(vlan, "(2,)<u4"), F(c_port, "<u2"),
        F(s_port, "<u2"), F(c_addr, "(16,)u1"), F(s_addr, "(16,)u1"), F(c_len, "u1"), F(s_len, "u1"),
        F(cstate, "u1"), F(sstate, "u1"), F(vlan_n, "u1"), F(midstream, "u1"), F(ended, "u1"), F(rst_by, "u1"),
        F(zeek, "u1"), F(hist_len, "u1"), F(odd, "u1"), F(history, "S32"),
    };
#undef F
    size_t count = sizeof fields / sizeof fields[0];
    PyObject *list = PyTuple_New((Py_ssize_t)count);
    if (list == NULL)
        return NULL;
    for (size_t i = 0; i < count; i++) {
        PyObject *item = Py_BuildValue("(ssn)", fields[i].name, fields[i].type, (Py_ssize_t)fields[i].offset);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyTuple_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    return Py_BuildValue("(nNi)", (Py_ssize_t)sizeof(RowRec), list, SG_WIDTH);
}

/* ---------------------------------------------------------------------------------------------------------------
 * Reading capture files (capture/files.py): classic pcap (either byte order, micro- or nanosecond timestamps) and
 * pcapng (Enhanced Packet Blocks, several interfaces of one link type, decimal timestamp resolutions and offsets),
 * read in large blocks; a batch (`Frames`) is an array of (time, offset, length) into one block, so no Python object
 * is made per packet: the packet loop (`run`) reads the frames where they lie. Times are whole microseconds as
 * libpcap hands them out (nanoseconds cut, not rounded), and dated by the file's clock (capture/clock.py): a packet
 * dated before one read earlier gets the latest time read, and is counted. With a share (count > 1), only the
 * packets placed on this shard and those this decoder cannot place are kept (engine/placement.py).
 *
 * Anything this reader is not sure libpcap reads the same way (a block it does not know the meaning of, a caplen
 * above the snapshot length, a binary timestamp resolution, a new section, a cut-off record, damage) ends its part:
 * `status` is HANDOVER and `delivered` says how many packets it read, from which capture/files.py lets libpcap
 * read the rest (and say what is wrong with it, as it always has). A file it cannot open as one of its formats
 * raises ValueError (libpcap reads it all).
 * ------------------------------------------------------------------------------------------------------------ */

#include <fcntl.h>
#include <unistd.h>
#include <errno.h>

#define READ_BLOCK (4 << 20)      /* bytes read at a time */
#define MAX_SNAPLEN 262144        /* libpcap's max_snaplen_for_dlt for the link types read here */
#define MAX_IFACES 256


static void frames_dealloc(FramesObject *self) {
    Py_XDECREF(self->block);
    PyMem_Free(self->e);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static FramesObject *frames_make(PyObject *block, Py_ssize_t cap) {
    FramesObject *fr = PyObject_New(FramesObject, &FramesType);
    if (fr == NULL)
        return NULL;
    fr->block = Py_NewRef(block);
    fr->n = 0;
    fr->e = PyMem_Malloc((cap > 0 ? cap : 1) * sizeof(FrameEntry));
    if (fr->e == NULL) {
        Py_DECREF(fr);
        PyErr_NoMemory();
        return NULL;
    }
    return fr;
}


static Py_ssize_t frames_length(FramesObject *self) { return self->n; }

static PyObject *frames_item(FramesObject *self, Py_ssize_t i) {
    if (i < 0 || i >= self->n) {
        PyErr_SetString(PyExc_IndexError, "frame index out of range");
        return NULL;
    }
    const FrameEntry *e = &self->e[i];
    return Py_BuildValue("(dy#)", e->ts, (const char *)frames_base(self) + e->off, (Py_ssize_t)e->len);
}

static PyObject *frames_subscript(FramesObject *self, PyObject *key) {
    if (PyIndex_Check(key)) {
        Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred())
            return NULL;
        if (i < 0)
            i += self->n;
        return frames_item(self, i);
    }
    if (!PySlice_Check(key)) {
        PyErr_SetString(PyExc_TypeError, "frames are indexed by integers or slices");
        return NULL;
    }
    Py_ssize_t start, stop, step;
    if (PySlice_Unpack(key, &start, &stop, &step) < 0)
        return NULL;
    Py_ssize_t count = PySlice_AdjustIndices(self->n, &start, &stop, step);
    PyObject *out = PyList_New(count);
    for (Py_ssize_t k = 0, i = start; out != NULL && k < count; k++, i += step) {
        PyObject *item = frames_item(self, i);
        if (item == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, k, item);
    }
    return out;
}

static PyObject *frames_indices(FramesObject *self, uint32_t flag) {
    PyObject *out = PyList_New(0);
    for (Py_ssize_t i = 0; out != NULL && i < self->n; i++) {
        if (!(self->e[i].flags & flag))
            continue;
        PyObject *at = PyLong_FromSsize_t(i);
        if (at == NULL || PyList_Append(out, at) < 0)
            Py_CLEAR(out);
        Py_XDECREF(at);
    }
    return out;
}

static PyObject *frames_unplaced(FramesObject *self, PyObject *unused) { return frames_indices(self, F_UNPLACED); }

static PyObject *frames_late(FramesObject *self, PyObject *unused) { return frames_indices(self, F_LATE); }

/* drop(indices) -> (frames, late): the batch without the packets at `indices`, and how many of those were late */
static PyObject *frames_drop(FramesObject *self, PyObject *indices) {
    PyObject *seq = PySequence_Fast(indices, "drop takes a sequence of indices");
    if (seq == NULL)
        return NULL;
    unsigned char *gone = PyMem_Calloc(self->n > 0 ? self->n : 1, 1);
    FramesObject *out = NULL;
    long late = 0;
    if (gone == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0; k < PySequence_Fast_GET_SIZE(seq); k++) {
        Py_ssize_t i = PyNumber_AsSsize_t(PySequence_Fast_GET_ITEM(seq, k), PyExc_IndexError);
        if (i == -1 && PyErr_Occurred())
            goto done;
        if (i < 0 || i >= self->n) {
            PyErr_SetString(PyExc_IndexError, "frame index out of range");
            goto done;
        }
        gone[i] = 1;
    }
    if ((out = frames_make(self->block, self->n)) == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < self->n; i++) {
        if (gone[i])
            late += (self->e[i].flags & F_LATE) != 0;
        else
            out->e[out->n++] = self->e[i];
    }
done:
    PyMem_Free(gone);
    Py_DECREF(seq);
    if (out == NULL)
        return NULL;
    return Py_BuildValue("(Nl)", (PyObject *)out, late);
}

static PySequenceMethods frames_as_sequence = {
    .sq_length = (lenfunc)frames_length,
    .sq_item = (ssizeargfunc)frames_item,
};

static PyMappingMethods frames_as_mapping = {
    .mp_length = (lenfunc)frames_length,
    .mp_subscript = (binaryfunc)frames_subscript,
};

static PyMethodDef frames_methods[] = {
    {"unplaced", (PyCFunction)frames_unplaced, METH_NOARGS,
     "The indexes of the packets this decoder could not place on a shard (the Python decoder must)."},
    {"late", (PyCFunction)frames_late, METH_NOARGS, "The indexes of the packets the file's clock dated late."},
    {"drop", (PyCFunction)frames_drop, METH_O, "drop(indices) -> (frames, late among those dropped)."},
    {NULL},
};

static PyTypeObject FramesType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "midstat_tui._core.Frames",
    .tp_basicsize = sizeof(FramesObject),
    .tp_dealloc = (destructor)frames_dealloc,
    .tp_as_sequence = &frames_as_sequence,
    .tp_as_mapping = &frames_as_mapping,
    .tp_methods = frames_methods,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A batch of packets as (ts, frame) items, lying in the block of the file they were read from.",
};

typedef struct {
    int linktype;
    int usable;                   /* its packets are read here (else: handed over) */
    uint64_t units;               /* timestamp units per second (10^k) */
    uint64_t down, up;            /* to microseconds: divide by `down` (k > 6) or multiply by `up` (k < 6) */
    int64_t offset;               /* if_tsoffset, seconds */
} Iface;

typedef struct {
    PyObject_HEAD
    int fd;
    int ng;                       /* pcapng */
    int swap;                     /* the file's byte order is not this machine's */
    int nsec;                     /* classic pcap with nanosecond times */
    int linktype, dlt;
    uint32_t snapshot;            /* libpcap's snapshot length: caplen above it is handed over */
    uint32_t first_snaplen;       /* pcapng: the first interface's, as written (libpcap wants the others' equal) */
    int n_if;
    Iface ifs[MAX_IFACES];
    PyObject *block;              /* bytes: what was read and not yet parsed lies in [pos, end) */
    PyObject *spare;              /* the block before: reused once no batch holds it */
    Py_ssize_t pos, end;
    int eof;
    int status;
    long long latest;             /* the clock: the latest time read, whole microseconds (-1: none yet) */
    long long late;               /* late packets among those kept */
    long long delivered;          /* packets read (every shard's) */
    int count, shard, batch;
} ReaderObject;

static inline uint32_t r32(const ReaderObject *r, const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return r->swap ? __builtin_bswap32(v) : v;
}

static inline uint16_t r16(const ReaderObject *r, const unsigned char *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return r->swap ? __builtin_bswap16(v) : v;
}

/* Make at least `need` unparsed bytes available from `pos` (a new block: the unparsed tail moves to its start).
 * 1: available; 0: the file ended first; -1: error (set). */
static int reader_fill(ReaderObject *r, Py_ssize_t need) {
    if (r->end - r->pos >= need)
        return 1;
    if (r->eof)
        return 0;
    Py_ssize_t left = r->end - r->pos;
    Py_ssize_t size = READ_BLOCK;
    while (size < need + 4096)
        size *= 2;
    PyObject *fresh;
    if (r->spare != NULL && Py_REFCNT(r->spare) == 1 && PyBytes_GET_SIZE(r->spare) >= size) {
        /* the block before the last one, which no batch holds any more: its pages are mapped already (a fresh
         * block of 4 MiB costs a thousand page faults) */
        fresh = r->spare;
        r->spare = NULL;
        size = PyBytes_GET_SIZE(fresh);
    } else if ((fresh = PyBytes_FromStringAndSize(NULL, size)) == NULL) {
        return -1;
    }
    char *dst = PyBytes_AS_STRING(fresh);
    if (left > 0)
        memcpy(dst, PyBytes_AS_STRING(r->block) + r->pos, left);
    Py_ssize_t have = left;
    while (have < size) {
        ssize_t got;
        Py_BEGIN_ALLOW_THREADS
        got = read(r->fd, dst + have, size - have);
        Py_END_ALLOW_THREADS
        if (got < 0) {
            if (errno == EINTR) {
                if (PyErr_CheckSignals() < 0) {
                    Py_DECREF(fresh);
                    return -1;
                }
                continue;
            }
            Py_DECREF(fresh);
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (got == 0) {
            r->eof = 1;
            break;
        }
        have += got;
    }
    Py_XSETREF(r->spare, r->block);
    r->block = fresh;
    r->pos = 0;
    r->end = have;
    return have >= need ? 1 : 0;
}

static int linktype_to_dlt(int linktype) { return linktype == 101 ? 12 : linktype; }

/* the link types read here: Ethernet and raw IP in either byte order; Linux cooked captures (whose pseudo-headers
 * libpcap rewrites in a file of the other byte order) in this machine's only */
static int linktype_ok(int linktype, int swap) {
    switch (linktype) {
    case 1: case 101: case 228: case 229:
        return 1;
    case 113: case 276:
        return !swap;
    default:
        return 0;
    }
}

static uint32_t adjusted_snapshot(uint32_t snaplen) {
    return snaplen == 0 || snaplen > MAX_SNAPLEN ? MAX_SNAPLEN : snaplen;
}

/* an Interface Description Block's body (after type and length; `len` bytes before the trailer) */
static int parse_idb(ReaderObject *r, const unsigned char *b, Py_ssize_t len) {
    if (len < 8 || r->n_if >= MAX_IFACES)
        return 0;
    Iface *ifc = &r->ifs[r->n_if];
    ifc->linktype = r16(r, b);
    uint32_t snaplen = r32(r, b + 4);
    int exponent = 6, binary = 0, saw_resol = 0, saw_offset = 0;
    int64_t offset = 0;
    Py_ssize_t at = 8;
    /* what libpcap refuses (its error ends the file there) is left to it: a resolution past 10^-19 or 2^-63, an
     * option given twice, an end-of-options option with a length */
    while (at + 4 <= len) {
        uint16_t code = r16(r, b + at), olen = r16(r, b + at + 2);
        Py_ssize_t padded = ((Py_ssize_t)olen + 3) & ~(Py_ssize_t)3;
        if (at + 4 + padded > len)
            return 0;
        const unsigned char *v = b + at + 4;
        if (code == 0) {
            if (olen != 0)
                return 0;
            break;
        }
        if (code == 9) {          /* if_tsresol */
            if (olen != 1 || saw_resol++)
                return 0;
            binary = (v[0] & 0x80) != 0;
            exponent = v[0] & 0x7F;
            if (exponent > (binary ? 63 : 19))
                return 0;
        } else if (code == 14) {  /* if_tsoffset */
            if (olen != 8 || saw_offset++)
                return 0;
            uint64_t raw;
            memcpy(&raw, v, 8);
            offset = (int64_t)(r->swap ? __builtin_bswap64(raw) : raw);
        }
        at += 4 + padded;
    }
    ifc->offset = offset;
    ifc->usable = !binary && exponent <= 9 && linktype_ok(ifc->linktype, r->swap) &&
                  offset > -1000000000LL && offset < 1000000000LL;
    /* libpcap refuses an interface of another link type or snapshot length than the first one's */
    if (r->n_if > 0 && (ifc->linktype != r->linktype || snaplen != r->first_snaplen))
        return 0;
    uint64_t units = 1;
    for (int k = 0; k < exponent && k < 19; k++)
        units *= 10;
    ifc->units = units;
    ifc->down = exponent > 6 ? units / 1000000 : 1;
    ifc->up = exponent < 6 ? 1000000 / units : 1;
    if (r->n_if == 0) {
        r->first_snaplen = snaplen;
        r->linktype = ifc->linktype;
        r->snapshot = adjusted_snapshot(snaplen);
    }
    r->n_if++;
    return 1;
}

/* The header: a classic pcap file header, or pcapng's first Section Header Block up to its first Interface
 * Description Block. 1: readable here; 0: not (ValueError: libpcap's) */
static int reader_header(ReaderObject *r) {
    int got = reader_fill(r, 24);
    if (got <= 0)
        return got;
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(r->block);
    uint32_t magic;
    memcpy(&magic, p, 4);
    if (magic == 0xa1b2c3d4u || magic == 0xa1b23c4du || magic == 0xd4c3b2a1u || magic == 0x4d3cb2a1u) {
        r->swap = magic == 0xd4c3b2a1u || magic == 0x4d3cb2a1u;
        r->nsec = magic == 0xa1b23c4du || magic == 0x4d3cb2a1u;
        if (r16(r, p + 4) != 2 || r16(r, p + 6) != 4)
            return 0;
        uint32_t network = r32(r, p + 20);
        if (network & 0xFC000000u)  /* FCS length bits: libpcap's */
            return 0;
        r->linktype = (int)network;
        r->snapshot = adjusted_snapshot(r32(r, p + 16));
        r->pos = 24;
        return linktype_ok(r->linktype, r->swap);
    }
    if (magic != 0x0A0D0D0Au)
        return 0;
    uint32_t bom;
    memcpy(&bom, p + 8, 4);
    if (bom == 0x1A2B3C4Du)
        r->swap = 0;
    else if (bom == 0x4D3C2B1Au)
        r->swap = 1;
    else
        return 0;
    r->ng = 1;
    uint32_t len = r32(r, p + 4);
    if (len < 28 || len % 4 != 0 || len > (16u << 20) || r16(r, p + 12) != 1 || r16(r, p + 14) != 0)
        return 0;
    if ((got = reader_fill(r, len)) <= 0)
        return got;
    r->pos += len;
    /* blocks up to the first IDB: libpcap takes the link type and snapshot length from it */
    for (;;) {
        if ((got = reader_fill(r, 12)) <= 0)
            return got;
        p = (const unsigned char *)PyBytes_AS_STRING(r->block) + r->pos;
        uint32_t type = r32(r, p), blen = r32(r, p + 4);
        if (blen < 12 || blen % 4 != 0 || blen > (16u << 20))
            return 0;
        if ((got = reader_fill(r, blen)) <= 0)
            return got;
        p = (const unsigned char *)PyBytes_AS_STRING(r->block) + r->pos;
        if (type == 1) {
            if (!parse_idb(r, p + 8, blen - 12) || !r->ifs[0].usable)
                return 0;
            r->pos += blen;
            return 1;
        }
        if (type == 2 || type == 3 || type == 6 || type == 0x0A0D0D0Au)
            return 0;             /* a packet before any interface, a new section: libpcap's */
        r->pos += blen;
    }
}

static void reader_dealloc(ReaderObject *self) {
    if (self->fd >= 0)
        close(self->fd);
    Py_XDECREF(self->block);
    Py_XDECREF(self->spare);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Reader(path, count=1, shard=0, batch=1024) */
static int reader_init(ReaderObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"path", "count", "shard", "batch", NULL};
    PyObject *path;
    int count = 1, shard = 0, batch = 1024;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&|iii", kwlist, PyUnicode_FSConverter, &path, &count, &shard,
                                     &batch))
        return -1;
    if (count < 1 || count >= UNPLACED || shard < 0 || shard >= count || batch < 1) {
        Py_DECREF(path);
        PyErr_SetString(PyExc_ValueError, "0 <= shard < count < 255, batch >= 1");
        return -1;
    }
    if (self->fd >= 0)
        close(self->fd);
    Py_CLEAR(self->block);
    Py_CLEAR(self->spare);
    self->fd = -1;
    self->ng = self->swap = self->nsec = self->n_if = self->eof = 0;
    self->pos = self->end = 0;
    self->status = READ_ON;
    self->latest = -1;
    self->late = self->delivered = 0;
    self->count = count;
    self->shard = shard;
    self->batch = batch;
    Py_BEGIN_ALLOW_THREADS
    self->fd = open(PyBytes_AS_STRING(path), O_RDONLY | O_CLOEXEC);
    Py_END_ALLOW_THREADS
    if (self->fd < 0) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
        Py_DECREF(path);
        return -1;
    }
    Py_DECREF(path);
    if ((self->block = PyBytes_FromStringAndSize(NULL, 0)) == NULL)
        return -1;
    int rc = reader_header(self);
    if (rc < 0)
        return -1;
    if (rc == 0) {
        PyErr_SetString(PyExc_ValueError, "not a capture this reader reads (libpcap's)");
        return -1;
    }
    self->dlt = linktype_to_dlt(self->linktype);
    return 0;
}

static PyObject *reader_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    ReaderObject *self = (ReaderObject *)type->tp_alloc(type, 0);
    if (self != NULL)
        self->fd = -1;
    return (PyObject *)self;
}

/* One record at `pos`: 1 a packet (its time in whole microseconds, where its frame lies), 2 a block with no packet
 * (skipped), 0 the end of what this reader reads (status set), -1 an error. */
static int reader_record(ReaderObject *r, long long *micro, Py_ssize_t *at, uint32_t *caplen) {
    int got;
    if (!r->ng) {
        if ((got = reader_fill(r, 16)) <= 0) {
            if (got == 0)
                r->status = r->end > r->pos ? READ_HANDOVER : READ_END;
            return got;
        }
        const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(r->block) + r->pos;
        uint32_t sec = r32(r, p), frac = r32(r, p + 4), len = r32(r, p + 8);
        if (len > r->snapshot || sec > 0x7FFFFFFFu) {
            /* (a time past 2038: libpcap's batches and its packet-by-packet reading disagree on it) */
            r->status = READ_HANDOVER;
            return 0;
        }
        if ((got = reader_fill(r, 16 + (Py_ssize_t)len)) <= 0) {
            if (got == 0)
                r->status = READ_HANDOVER;
            return got;
        }
        *micro = (long long)sec * 1000000 + (r->nsec ? frac / 1000 : frac);
        *at = r->pos + 16;
        *caplen = len;
        r->pos += 16 + (Py_ssize_t)len;
        return 1;
    }
    if ((got = reader_fill(r, 12)) <= 0) {
        if (got == 0)
            r->status = r->end > r->pos ? READ_HANDOVER : READ_END;
        return got;
    }
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(r->block) + r->pos;
    uint32_t type = r32(r, p), blen = r32(r, p + 4);
    if (blen < 12 || blen % 4 != 0 || blen > (16u << 20)) {
        r->status = READ_HANDOVER;
        return 0;
    }
    if ((got = reader_fill(r, blen)) <= 0) {
        if (got == 0)
            r->status = READ_HANDOVER;
        return got;
    }
    p = (const unsigned char *)PyBytes_AS_STRING(r->block) + r->pos;
    if (r32(r, p + blen - 4) != blen) {
        r->status = READ_HANDOVER;
        return 0;
    }
    if (type == 6) {              /* Enhanced Packet Block */
        if (blen < 32) {
            r->status = READ_HANDOVER;
            return 0;
        }
        uint32_t iface = r32(r, p + 8), len = r32(r, p + 20);
        if (iface >= (uint32_t)r->n_if || !r->ifs[iface].usable || len > r->snapshot || 28 + (Py_ssize_t)len + 4 > blen) {
            r->status = READ_HANDOVER;
            return 0;
        }
        const Iface *ifc = &r->ifs[iface];
        uint64_t t = ((uint64_t)r32(r, p + 12) << 32) | r32(r, p + 16);
        uint64_t sec = t / ifc->units, frac = t % ifc->units;
        frac = ifc->down > 1 ? frac / ifc->down : frac * ifc->up;
        int64_t s = (int64_t)sec + ifc->offset;
        if (sec > 0xFFFFFFFFull || s < 0 || s > 0x7FFFFFFFLL) {
            r->status = READ_HANDOVER;
            return 0;
        }
        *micro = (long long)s * 1000000 + (long long)frac;
        *at = r->pos + 28;
        *caplen = len;
        r->pos += blen;
        return 1;
    }
    if (type == 1) {              /* another interface */
        if (!parse_idb(r, p + 8, blen - 12)) {
            r->status = READ_HANDOVER;
            return 0;
        }
        r->pos += blen;
        return 2;
    }
    if (type == 2 || type == 3 || type == 0x0A0D0D0Au) {
        /* an obsolete or simple packet block, a new section: libpcap's */
        r->status = READ_HANDOVER;
        return 0;
    }
    r->pos += blen;               /* name resolution, statistics, ...: no packet */
    return 2;
}

/* Does the next record lie whole in the bytes read? (Else reading it starts a new block.) */
static int record_ready(const ReaderObject *r) {
    Py_ssize_t left = r->end - r->pos;
    if (left < (r->ng ? 12 : 16))
        return 0;
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(r->block) + r->pos;
    uint32_t need = r->ng ? r32(r, p + 4) : 16 + r32(r, p + 8);
    return need <= (uint64_t)left;
}

/* next() -> Frames, or None once this reader is done (`status` says why): up to `batch` packets of this shard, all
 * in one block */
static PyObject *reader_next(ReaderObject *r, PyObject *unused) {
    if (r->fd < 0 || r->status != READ_ON)
        Py_RETURN_NONE;
    FramesObject *out = NULL;
    for (;;) {
        if (out != NULL && !record_ready(r))
            return (PyObject *)out;  /* the batch lies in this block; the next record starts the next batch */
        long long micro;
        Py_ssize_t at;
        uint32_t caplen;
        int rc = reader_record(r, &micro, &at, &caplen);
        if (rc < 0) {
            Py_XDECREF(out);
            return NULL;
        }
        if (rc == 0)
            break;
        if (rc == 2)
            continue;
        r->delivered++;
        uint32_t flags = 0;
        if (micro < r->latest) {
            flags |= F_LATE;
            micro = r->latest;
        } else {
            r->latest = micro;
        }
        const unsigned char *f = (const unsigned char *)PyBytes_AS_STRING(r->block) + at;
        if (r->count > 1) {
            int where = place_one(r->dlt, f, (Py_ssize_t)caplen, r->count);
            if (where == UNPLACED)
                flags |= F_UNPLACED;
            else if (where != r->shard)
                continue;
        }
        if (flags & F_LATE)
            r->late++;
        if (out == NULL && (out = frames_make(r->block, r->batch)) == NULL)
            return NULL;
        long long sec = micro / 1000000, usec = micro % 1000000;
        FrameEntry *e = &out->e[out->n++];
        e->ts = (double)sec + (double)usec * 1e-6;
        e->off = (uint32_t)at;
        e->len = caplen;
        e->flags = flags;
        if (out->n >= r->batch)
            return (PyObject *)out;
    }
    if (out != NULL)
        return (PyObject *)out;
    Py_RETURN_NONE;
}

static PyObject *reader_close(ReaderObject *r, PyObject *unused) {
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    Py_CLEAR(r->block);
    Py_CLEAR(r->spare);
    Py_RETURN_NONE;
}

static PyMethodDef reader_methods[] = {
    {"next", (PyCFunction)reader_next, METH_NOARGS,
     "next() -> Frames, or None once this reader is done (`status`: END, or HANDOVER to libpcap)."},
    {"close", (PyCFunction)reader_close, METH_NOARGS, "Close the file."},
    {NULL},
};

static PyMemberDef reader_members[] = {
    {"datalink", T_INT, offsetof(ReaderObject, dlt), READONLY, "the link type, as libpcap's datalink() says it"},
    {"status", T_INT, offsetof(ReaderObject, status), READONLY, "0 reading, 1 at the end, 2 handed over"},
    {"delivered", T_LONGLONG, offsetof(ReaderObject, delivered), READONLY, "packets read (every shard's)"},
    {"late", T_LONGLONG, offsetof(ReaderObject, late), READONLY, "late packets among those kept"},
    {"latest", T_LONGLONG, offsetof(ReaderObject, latest), 0, "the clock: latest time read (microseconds)"},
    {NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "midstat_tui._core.Reader",
    .tp_basicsize = sizeof(ReaderObject),
    .tp_new = reader_new,
    .tp_init = (initproc)reader_init,
    .tp_dealloc = (destructor)reader_dealloc,
    .tp_methods = reader_methods,
    .tp_members = reader_members,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Reader(path, count=1, shard=0, batch=1024): a pcap or pcapng file's packets in batches (Frames).",
};

static PyMethodDef module_methods[] = {
    {"decode_frame", py_decode_frame, METH_VARARGS,
     "decode_frame(ts, frame, dlt, verify): the Segment fields the packet loop reads, or None (another shape)."},
    {"split", py_split, METH_VARARGS, "split(data, meta): a next_batch result as a list of (ts, frame)."},
    {"pick_keys", py_pick_keys, METH_VARARGS,
     "pick_keys(batch, keys, dlt) -> (hits, others): (index, key) of the TCP frames whose key is in `keys`, the "
     "indices of the frames not read as TCP (live --write)."},
    {"in_order", py_in_order, METH_VARARGS,
     "in_order(meta, latest) -> int: a next_batch result's latest time in microseconds if no packet is late, else -1."},
    {"apply", py_apply, METH_VARARGS,
     "apply(conn, segment, from_client) -> transitions: both endpoint machines, the Zeek view and conn.last "
     "(machine.apply_segment + zeek.note_segment)."},
    {"place", py_place, METH_VARARGS, "place(batch, dlt, count) -> bytes: each packet's shard (255: not placed here)."},
    {"split_share", py_split_share, METH_VARARGS,
     "split_share(data, meta, dlt, count, shard) -> (packets, unplaced): split, keeping one shard's share."},
    {"flow_run", py_flow_run, METH_VARARGS,
     "flow_run(batch, start, limit, core, conn, verify, dlt, first, last, out, kinds, last_ack, prev, keep_frames): "
     "the ladder's replay of a connection's common packets (engine/flow_packets.attribute)."},
    {"scan_flow", py_scan_flow, METH_VARARGS,
     "scan_flow(buffer, dlt, a_addr, a_port, b_addr, b_port, first) -> [(ts, frame), ...] from an uncompressed "
     "pcap or pcapng file's bytes: the records that may be the tuple's packets; None: a shape read by libpcap."},
    {"ring_setup", py_ring_setup, METH_VARARGS,
     "ring_setup(packets, budget): keep each connection's last `packets` packet headers (0: off), all rings in "
     "`budget` bytes."},
    {"ring_stats", py_ring_stats, METH_NOARGS, "ring_stats() -> (packets, budget, bytes used, rings)."},
    {"ring_of", py_ring_of, METH_O,
     "ring_of(conn) -> (seen, [(ts, flags, seq, ack, win, payload, ttl, from_client), ...]): its ring, oldest "
     "first; seen counts every packet noted."},
    {"run", py_run, METH_VARARGS, "Feed a batch of Ethernet frames to live connections while nothing else is needed."},
    {"live_deadline", py_live_deadline, METH_VARARGS,
     "live_deadline(core, conn) -> float: when a live connection is done (tcp/seam.py's live_deadline)."},
    {"schedule", py_schedule, METH_VARARGS,
     "schedule(core, conn) -> bool: after a change: True when both sides are CLOSED, else the handshake pool and "
     "the timer follow it (tcp/seam.py's schedule)."},
    {"admit", py_admit, METH_VARARGS, "admit(core, conn): a new connection joins the table (tcp/seam.py's admit)."},
    {"tidy_due", py_tidy_due, METH_O, "tidy_due(core) -> int: the heap (1) or the pool (2) due for tidying."},
    {"measure_cells", py_measure_cells, METH_VARARGS,
     "measure_cells(row, widths) -> cells: widths (int64 buffer, one per column) grows to the row's tab-separated "
     "cells' lengths."},
    {"lay_out", py_lay_out, METH_VARARGS,
     "lay_out(row, widths, right) -> str: the row's tab-separated cells padded to widths (right-aligned where "
     "right[i]), two spaces apart, rstripped; None if the cell count differs."},
    {"summary_cells", py_summary_cells, METH_VARARGS,
     "summary_cells(conn, zeek_state) -> str: the --summary table's cells of the connection, tab-separated (as "
     "output.plain.summary_row writes them); None if a value needs Python."},
    {"record_json", py_record_json, METH_VARARGS,
     "record_json(conn, zeek_state) -> str: the connection's record as compact JSON (engine.records.FIELDS), the "
     "bytes json would write; None if a value needs the Python encoder."},
    {"ipfix_record", py_ipfix_record, METH_VARARGS,
     "ipfix_record(conn, reason, now, always, done) -> (now, is IPv4, bytes) | None | NotImplemented: the "
     "connection's IPFIX data record since its previous one (export/flows.py), as the rfc5103 template lays it out."},
    {"ipfix_sweep", py_ipfix_sweep, METH_VARARGS,
     "ipfix_sweep(conns, now, cutoff, reason, done) -> list: the active-timeout records of the open connections "
     "(a connection itself where the Python encoder must take it)."},
    {"ipfix_final", py_ipfix_final, METH_VARARGS,
     "ipfix_final(conns, now, done, final, reasons) -> list: the end of the capture's records (FlowExporter.finish; "
     "a connection itself where the Python encoder must take it)."},
    {"ipfix_on_end", py_ipfix_on_end, METH_VARARGS,
     "ipfix_on_end(state, conn): FlowExporter.on_end in C (its end record into the sender's queue)."},
    {"ipfix_on_remove", py_ipfix_on_remove, METH_VARARGS,
     "ipfix_on_remove(state, conn): FlowExporter.on_remove in C (the chained hook, then a late record if any)."},
    {"ipfix_messages", py_ipfix_messages, METH_VARARGS,
     "ipfix_messages(pending, sequence, domain, templates, limit) -> [(message, records)]: export.ipfix.messages "
     "over the sender's queued (export time, is IPv4, bytes) records."},
    {"state_pairs", py_state_pairs, METH_O,
     "state_pairs(conns) -> {\"CLIENT/SERVER\": n} of the connections not ended (Tracker.state_pairs), or None "
     "if one is not the compiled core's."},
    {"row_cols", py_row_cols, METH_VARARGS,
     "row_cols(conns, out, ended_names, rst_names) -> int: each connection's row as a record (row_layout) into "
     "the buffer `out`, in order; how many are marked odd (their rows need Python: engine.rowcols)."},
    {"row_signals", py_row_signals, METH_VARARGS,
     "row_signals(records, out, some) -> int: problems.signals of each record into out (float64, WIDTH each), "
     "some[i] = 1 where it has any; how many have. Without the interpreter lock."},
    {"row_layout", py_row_layout, METH_NOARGS,
     "row_layout() -> (size, ((name, type, offset), ...), width): the row record's layout, the signals' width."},
    {NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT, "_core", "midstat's compiled core: connection records, state machines, packet loop.", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__core(void) {
    const uint16_t probe = 1;
    if (*(const unsigned char *)&probe != 1) {
        PyErr_SetString(PyExc_ImportError, "midstat's compiled core supports little-endian machines only");
        return NULL;
    }
    if (PyType_Ready(&SideType) < 0 || PyType_Ready(&ConnType) < 0 || PyType_Ready(&FramesType) < 0 ||
        PyType_Ready(&ReaderType) < 0)
        return NULL;
    for (int i = 0; i < N_STATES; i++)
        if ((state_names[i] = PyUnicode_InternFromString(STATE_NAMES[i])) == NULL)
            return NULL;
    for (int i = 1; i < 128; i++) {
        char ch = (char)i;
        if ((letters[i] = PyUnicode_FromStringAndSize(&ch, 1)) == NULL)
            return NULL;
        PyUnicode_InternInPlace(&letters[i]);
    }
    PyObject *heapq = PyImport_ImportModule("_heapq");
    if (heapq == NULL)
        return NULL;
    heappush = PyObject_GetAttrString(heapq, "heappush");
    Py_DECREF(heapq);
    if (heappush == NULL)
        return NULL;
    /* the public names of tcp/seam.py's CoreState, and deque.append */
    PyObject **attrs[] = {&s_table, &s_timers, &s_handshakes, &s_touched, &s_next_id, &s_latest, &s_events,
                          &s_max_conns, &s_shard, &s_shard_count, &s_tw_hold, &s_idle, &s_timer_slack,
                          &s_pool_slack, &s_make_room, &s_append};
    const char *attr_texts[] = {"table", "timers", "handshakes", "touched", "next_id", "latest", "events",
                                "max_conns", "shard", "shard_count", "tw_hold", "idle", "timer_slack",
                                "pool_slack", "make_room", "append"};
    for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++)
        if ((*attrs[i] = PyUnicode_InternFromString(attr_texts[i])) == NULL)
            return NULL;
    PyObject **names[] = {&s_ts, &s_flags, &s_seq, &s_ack, &s_win, &s_payload, &s_ip_len, &s_ttl, &s_mac,
                          &s_truncated};
    const char *texts[] = {"ts", "flags", "seq", "ack", "win", "payload", "ip_len", "ttl", "mac", "truncated"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if ((*names[i] = PyUnicode_InternFromString(texts[i])) == NULL)
            return NULL;
    PyObject *m = PyModule_Create(&core_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Side", (PyObject *)&SideType) < 0 ||
        PyModule_AddObjectRef(m, "Connection", (PyObject *)&ConnType) < 0 ||
        PyModule_AddObjectRef(m, "Frames", (PyObject *)&FramesType) < 0 ||
        PyModule_AddObjectRef(m, "Reader", (PyObject *)&ReaderType) < 0 ||
        PyModule_AddIntConstant(m, "READ_END", READ_END) < 0 ||
        PyModule_AddIntConstant(m, "READ_HANDOVER", READ_HANDOVER) < 0 ||
        PyModule_AddIntConstant(m, "STOP_END", STOP_END) < 0 || PyModule_AddIntConstant(m, "STOP_SLOW", STOP_SLOW) < 0 ||
        PyModule_AddIntConstant(m, "STOP_TIME", STOP_TIME) < 0 ||
        PyModule_AddIntConstant(m, "STOP_CHANGED", STOP_CHANGED) < 0 ||
        PyModule_AddIntConstant(m, "UNPLACED", UNPLACED) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
