/* py_app_record.c - the application epoch's one-record seal and open (dtls_app_seal,
 * dtls_app_open) as Python functions that make their result's bytes themselves
 * (RFC 9147 §4).
 *
 * Through cffi, each record costs a cffi call (argument conversion, a tuple), a Python
 * frame around it and a copy out of a scratch buffer. These functions are bound to one
 * sender or receiver (the builtin's `self` is a capsule holding it) and called directly:
 * `sender.seal(seq, payload)` seals into a new bytes object, `sender.seal_run(seq,
 * payloads)` a list of them, and `receiver.open(datagram, max_plaintext)` returns the
 * plaintext as bytes. The event each record is handed to the application in is made in
 * one call too: instance_maker(cls, names) makes instances of a class with __slots__ (a
 * frozen dataclass's too) with those slots set, without running __init__.
 *
 * They are compiled into the cffi module (dtls._native), to which dtls_app_py_install()
 * adds the three factories; the GIL is held throughout, as for every dtls_app_* call.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "dtls_native.h"

/* largest unified header + RFC 9846 §5.2 limit (dtls.record.MAX_RECORD) */
#define APP_MAX_RECORD (1 + 255 + 2 + 2 + (1 << 14) + 256)

static const char SEALER[] = "dtls._native.app_sealer";
static const char OPENER[] = "dtls._native.app_opener";

typedef struct {
    dtls_app_sender *sender;
    PyObject *owner;  /* keeps the C state and the cipher it borrows alive */
    PyObject *failed; /* failed(code): raises the error a negative result stands for */
    Py_ssize_t overhead, shortest;
} app_sealer;

typedef struct {
    dtls_app_receiver *receiver;
    PyObject *owner;
    PyObject *other;  /* other((content_type, seq, plaintext)): the OpenedRecord */
    PyObject *failed; /* failed(code): the OpenError (or raises) */
} app_opener;

static void sealer_free(PyObject *capsule)
{
    app_sealer *s = PyCapsule_GetPointer(capsule, SEALER);
    if (s == NULL)
        return;
    Py_XDECREF(s->owner);
    Py_XDECREF(s->failed);
    PyMem_Free(s);
}

static void opener_free(PyObject *capsule)
{
    app_opener *o = PyCapsule_GetPointer(capsule, OPENER);
    if (o == NULL)
        return;
    Py_XDECREF(o->owner);
    Py_XDECREF(o->other);
    Py_XDECREF(o->failed);
    PyMem_Free(o);
}

/* The bytes of a bytes object, or a buffer's (released by release_buffer). */
static int get_buffer(PyObject *obj, Py_buffer *view, const uint8_t **data, Py_ssize_t *len)
{
    if (PyBytes_CheckExact(obj)) {
        view->obj = NULL;
        *data = (const uint8_t *)PyBytes_AS_STRING(obj);
        *len = PyBytes_GET_SIZE(obj);
        return 0;
    }
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0)
        return -1;
    *data = view->buf;
    *len = view->len;
    return 0;
}

static void release_buffer(Py_buffer *view)
{
    if (view->obj != NULL)
        PyBuffer_Release(view);
}

/* What failed(code) gives; NULL with its exception when it raises. */
static PyObject *call_failed(PyObject *failed, int code)
{
    PyObject *n = PyLong_FromLong(code);
    if (n == NULL)
        return NULL;
    PyObject *result = PyObject_CallOneArg(failed, n);
    Py_DECREF(n);
    return result;
}

/* The record with sequence number seq carrying payload (RFC 9147 §4), a new bytes object. */
static PyObject *seal_one(app_sealer *s, unsigned long long seq, PyObject *payload_obj)
{
    Py_buffer view;
    const uint8_t *payload;
    Py_ssize_t len;
    if (get_buffer(payload_obj, &view, &payload, &len) < 0)
        return NULL;
    Py_ssize_t size = len > APP_MAX_RECORD ? APP_MAX_RECORD : len + s->overhead;
    if (size < s->shortest)
        size = s->shortest;
    PyObject *record = PyBytes_FromStringAndSize(NULL, size);
    int n = DTLS_ERR_ARGUMENT;
    if (record != NULL)
        n = dtls_app_seal(s->sender, seq, payload, (size_t)len,
                          (uint8_t *)PyBytes_AS_STRING(record), (size_t)size);
    release_buffer(&view);
    if (record == NULL || n == size)
        return record;
    Py_DECREF(record);
    PyObject *result = call_failed(s->failed, n < 0 ? n : DTLS_ERR_BUFFER);
    if (result != NULL) { /* failed() returns only for results >= 0: never one here */
        Py_DECREF(result);
        PyErr_Format(PyExc_SystemError, "seal: %d bytes where %zd were expected", n, size);
    }
    return NULL;
}

/* The sealer of seal(seq, x) / seal_run(seq, x), and seq; NULL with the exception. */
static app_sealer *seal_arguments(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                  unsigned long long *seq)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "seal and seal_run take 2 arguments");
        return NULL;
    }
    *seq = PyLong_AsUnsignedLongLong(args[0]);
    if (*seq == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    return PyCapsule_GetPointer(self, SEALER);
}

/* seal(seq, payload) -> bytes */
static PyObject *app_seal(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long seq;
    app_sealer *s = seal_arguments(self, args, nargs, &seq);
    return s != NULL ? seal_one(s, seq, args[1]) : NULL;
}

/* seal_run(seq, payloads) -> list of bytes: a record for each payload of the list, with
 * sequence numbers seq, seq + 1, ... (RFC 9147 §4): no copy of the payloads into one
 * buffer nor of the records out of one. */
static PyObject *app_seal_run(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long long seq;
    app_sealer *s = seal_arguments(self, args, nargs, &seq);
    if (s == NULL)
        return NULL;
    if (!PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "seal_run(seq, payloads: list)");
        return NULL;
    }
    PyObject *payloads = args[1];
    Py_ssize_t n = PyList_GET_SIZE(payloads);
    if ((unsigned long long)n > ~seq) {
        PyErr_SetString(PyExc_OverflowError, "seal_run: sequence numbers past 2^64");
        return NULL;
    }
    PyObject *records = PyList_New(n);
    if (records == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyList_GET_SIZE(payloads) != n) { /* changed by a buffer's export */
            PyErr_SetString(PyExc_RuntimeError, "seal_run: the list changed size");
            Py_DECREF(records); /* the items not set yet are NULL */
            return NULL;
        }
        PyObject *payload = Py_NewRef(PyList_GET_ITEM(payloads, i));
        PyObject *record = seal_one(s, seq + (unsigned long long)i, payload);
        Py_DECREF(payload);
        if (record == NULL) {
            Py_DECREF(records);
            return NULL;
        }
        PyList_SET_ITEM(records, i, record);
    }
    return records;
}

/* open(datagram, max_plaintext): the application data (bytes); the record when it opened
 * as something else; why it was dropped; None when the datagram is not one record of this
 * epoch and CID (RFC 9147 §4.1, §4.2.2, §4.5.1). */
static PyObject *app_open(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "open(datagram, max_plaintext) takes 2 arguments");
        return NULL;
    }
    app_opener *o = PyCapsule_GetPointer(self, OPENER);
    if (o == NULL)
        return NULL;
    Py_ssize_t max_plaintext = PyLong_AsSsize_t(args[1]);
    if (max_plaintext == -1 && PyErr_Occurred())
        return NULL;
    if (max_plaintext < 0) {
        PyErr_SetString(PyExc_ValueError, "open: max_plaintext < 0");
        return NULL;
    }
    Py_buffer view;
    const uint8_t *datagram;
    Py_ssize_t len;
    if (get_buffer(args[0], &view, &datagram, &len) < 0)
        return NULL;
    uint8_t out[APP_MAX_RECORD];
    int n = dtls_app_open(o->receiver, datagram, (size_t)len, (size_t)max_plaintext, out,
                          sizeof(out));
    release_buffer(&view);
    if (n >= 0)
        return PyBytes_FromStringAndSize((const char *)out, n);
    if (n == DTLS_APP_GENERAL)
        Py_RETURN_NONE;
    if (n != DTLS_APP_OTHER)
        return call_failed(o->failed, n);
    const dtls_open_result *res = dtls_app_result(o->receiver);
    PyObject *fields = Py_BuildValue("(iKy#)", (int)res->content_type,
                                     (unsigned long long)res->seq, (const char *)out,
                                     (Py_ssize_t)res->plaintext_len);
    if (fields == NULL)
        return NULL;
    PyObject *record = PyObject_CallOneArg(o->other, fields);
    Py_DECREF(fields);
    return record;
}

static PyMethodDef app_seal_def = {"seal", (PyCFunction)(void (*)(void))app_seal, METH_FASTCALL,
                                   "seal(seq, payload) -> bytes: one application-data record."};
static PyMethodDef app_seal_run_def = {
    "seal_run", (PyCFunction)(void (*)(void))app_seal_run, METH_FASTCALL,
    "seal_run(seq, payloads) -> list of bytes: a record for each, numbered from seq."};
static PyMethodDef app_open_def = {
    "open", (PyCFunction)(void (*)(void))app_open, METH_FASTCALL,
    "open(datagram, max_plaintext): the plaintext, the record, an OpenError or None."};

/* The C state a factory of `want` arguments was given as its first, an address (an int). */
static void *factory_state(const char *name, PyObject *const *args, Py_ssize_t nargs,
                           Py_ssize_t want)
{
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s takes %zd arguments", name, want);
        return NULL;
    }
    void *p = PyLong_AsVoidPtr(args[0]);
    if (p == NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "NULL state");
    return p;
}

/* A capsule owning a new zeroed state of `size` bytes (*state), which `destroy` releases
 * with what it then holds; NULL with the exception when either allocation fails. */
static PyObject *state_capsule(size_t size, const char *name, PyCapsule_Destructor destroy,
                               void **state)
{
    void *s = PyMem_Calloc(1, size);
    if (s == NULL)
        return PyErr_NoMemory();
    PyObject *capsule = PyCapsule_New(s, name, destroy);
    if (capsule == NULL)
        PyMem_Free(s);
    else
        *state = s;
    return capsule;
}

/* app_sealer(address, owner, overhead, shortest, failed) -> (seal, seal_run) */
static PyObject *make_sealer(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    void *sender = factory_state("app_sealer", args, nargs, 5);
    if (sender == NULL)
        return NULL;
    Py_ssize_t overhead = PyLong_AsSsize_t(args[2]);
    Py_ssize_t shortest = PyLong_AsSsize_t(args[3]);
    if (PyErr_Occurred())
        return NULL;
    if (overhead < 0 || shortest < 0 || overhead > 512 || shortest > 512) {
        PyErr_SetString(PyExc_ValueError, "app_sealer: bad record overhead");
        return NULL;
    }
    app_sealer *s = NULL;
    PyObject *capsule = state_capsule(sizeof(*s), SEALER, sealer_free, (void **)&s);
    if (capsule == NULL)
        return NULL;
    s->sender = sender;
    s->overhead = overhead;
    s->shortest = shortest;
    s->owner = Py_NewRef(args[1]);
    s->failed = Py_NewRef(args[4]);
    PyObject *seal = PyCFunction_New(&app_seal_def, capsule);
    PyObject *seal_run = PyCFunction_New(&app_seal_run_def, capsule);
    Py_DECREF(capsule);
    PyObject *both = seal != NULL && seal_run != NULL ? PyTuple_Pack(2, seal, seal_run) : NULL;
    Py_XDECREF(seal);
    Py_XDECREF(seal_run);
    return both;
}

/* app_opener(address, owner, other, failed) -> open */
static PyObject *make_opener(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    void *receiver = factory_state("app_opener", args, nargs, 4);
    if (receiver == NULL)
        return NULL;
    app_opener *o = NULL;
    PyObject *capsule = state_capsule(sizeof(*o), OPENER, opener_free, (void **)&o);
    if (capsule == NULL)
        return NULL;
    o->receiver = receiver;
    o->owner = Py_NewRef(args[1]);
    o->other = Py_NewRef(args[2]);
    o->failed = Py_NewRef(args[3]);
    PyObject *open = PyCFunction_New(&app_open_def, capsule);
    Py_DECREF(capsule);
    return open;
}

/* ---- instances of slotted classes ---- */

#define MAKER_MAX_SLOTS 8

static const char MAKER[] = "dtls._native.instance_maker";

typedef struct {
    PyTypeObject *type;
    Py_ssize_t n;
    Py_ssize_t offsets[MAKER_MAX_SLOTS];
} instance_maker;

static void maker_free(PyObject *capsule)
{
    instance_maker *m = PyCapsule_GetPointer(capsule, MAKER);
    if (m == NULL)
        return;
    Py_XDECREF(m->type);
    PyMem_Free(m);
}

/* make(*values): a new instance with its slots set to values, in order. */
static PyObject *make_instance(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    instance_maker *m = PyCapsule_GetPointer(self, MAKER);
    if (m == NULL)
        return NULL;
    if (nargs != m->n) {
        PyErr_Format(PyExc_TypeError, "%s takes %zd values, not %zd", m->type->tp_name, m->n,
                     nargs);
        return NULL;
    }
    PyObject *obj = m->type->tp_alloc(m->type, 0);
    if (obj == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < nargs; i++) /* the slots start NULL (tp_alloc zeroes them) */
        *(PyObject **)((char *)obj + m->offsets[i]) = Py_NewRef(args[i]);
    return obj;
}

static PyMethodDef make_instance_def = {"make", (PyCFunction)(void (*)(void))make_instance,
                                        METH_FASTCALL, "make(*values): a new instance."};

/* The offset of slot `name` of `type`: a writable object slot of `type` or a base. */
static Py_ssize_t slot_offset(PyTypeObject *type, PyObject *name)
{
    PyObject *descr = PyObject_GetAttr((PyObject *)type, name);
    if (descr == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return -1;
        PyErr_Clear();
    }
    Py_ssize_t offset = -1;
    if (descr != NULL && Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyMemberDescrObject *member = (PyMemberDescrObject *)descr;
        PyMemberDef *def = member->d_member;
        if (def->type == T_OBJECT_EX && !(def->flags & READONLY) &&
            PyType_IsSubtype(type, PyDescr_TYPE(member)) && def->offset > 0 &&
            def->offset + (Py_ssize_t)sizeof(PyObject *) <= type->tp_basicsize)
            offset = def->offset;
    }
    Py_XDECREF(descr);
    if (offset < 0)
        PyErr_Format(PyExc_TypeError, "%R is not a slot of %s", name, type->tp_name);
    return offset;
}

/* instance_maker(cls, names) -> make */
static PyObject *make_maker(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2 || !PyType_Check(args[0]) || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "instance_maker(cls, names: tuple)");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)args[0];
    Py_ssize_t n = PyTuple_GET_SIZE(args[1]);
    if (n > MAKER_MAX_SLOTS || type->tp_itemsize != 0 || type->tp_alloc == NULL) {
        PyErr_Format(PyExc_TypeError, "instance_maker: %s does not qualify", type->tp_name);
        return NULL;
    }
    instance_maker *m = NULL;
    PyObject *capsule = state_capsule(sizeof(*m), MAKER, maker_free, (void **)&m);
    if (capsule == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        m->offsets[i] = slot_offset(type, PyTuple_GET_ITEM(args[1], i));
        for (Py_ssize_t j = 0; j < i && m->offsets[i] >= 0; j++)
            if (m->offsets[j] == m->offsets[i]) {
                PyErr_SetString(PyExc_TypeError, "instance_maker: a slot named twice");
                m->offsets[i] = -1;
            }
        if (m->offsets[i] < 0) {
            Py_DECREF(capsule);
            return NULL;
        }
    }
    m->n = n;
    m->type = (PyTypeObject *)Py_NewRef(type);
    PyObject *make = PyCFunction_New(&make_instance_def, capsule);
    Py_DECREF(capsule);
    return make;
}

static PyMethodDef factories[] = {
    {"instance_maker", (PyCFunction)(void (*)(void))make_maker, METH_FASTCALL,
     "instance_maker(cls, names): make(*values), a new cls with those slots set."},
    {"app_sealer", (PyCFunction)(void (*)(void))make_sealer, METH_FASTCALL,
     "app_sealer(address, owner, overhead, shortest, failed): a dtls_app_sender's seal and "
     "seal_run."},
    {"app_opener", (PyCFunction)(void (*)(void))make_opener, METH_FASTCALL,
     "app_opener(address, owner, other, failed): a dtls_app_receiver's open."},
    {NULL, NULL, 0, NULL},
};

int dtls_app_py_install(void)
{
    PyObject *module = PyImport_ImportModule("dtls._native");
    int rc = module != NULL ? PyModule_AddFunctions(module, factories) : -1;
    Py_XDECREF(module);
    if (rc < 0)
        PyErr_Clear();
    return rc < 0 ? -1 : 0;
}
