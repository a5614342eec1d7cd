/*
 * flat.c - writes PostgreSQL's raw parse tree as a flat, pre-order list of
 * events for the guard (src/guard/flat.rs reads them).
 *
 * libpg_query ships its tree walkers as generated code that each output
 * format instantiates with its own WRITE_* macros (its JSON and protobuf
 * backends do exactly this). This file is a third instance of the same
 * generated code: it visits every field of every node kind, like the other
 * two, but instead of building protobuf messages and serialising them (most
 * of the cost of a full check) it appends one fixed-size event per struct,
 * list and non-default scalar. String values point into the parse tree,
 * which lives until pgtp_flat_free().
 *
 * The events mirror the protobuf message the pg_query crate decodes, field
 * for field and in the same order (enums as their protobuf numbers, chars as
 * one-byte strings, every repeated field as a list even when empty); a test
 * compares the two on the guard's corpora.
 */

#include "pg_query.h"
#include "pg_query_internal.h"

#include "postgres.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "access/relation.h"
#include "nodes/parsenodes.h"
#include "nodes/plannodes.h"
#include "nodes/value.h"
#include "utils/datum.h"
#include "miscadmin.h"

enum
{
	PGTP_STRUCT = 1,			/* opens a message: name = its type */
	PGTP_SEQ = 2,				/* opens a repeated field */
	PGTP_CLOSE = 3,				/* closes the innermost STRUCT or SEQ */
	PGTP_STR = 4,				/* a non-empty string: name = its bytes */
	PGTP_INT = 5,				/* a non-zero integer or enum */
	PGTP_TRUE = 6,				/* a true boolean */
	PGTP_NO_STMT = 7			/* a RawStmt without a statement */
};

/* Shared with src/guard/flat.rs (#[repr(C)] Event). */
typedef struct
{
	const char *name;			/* type name, or string bytes */
	const char *field;			/* field of the parent ("" for list items) */
	int64_t		ival;			/* integer value */
	uint32_t	name_len;
	uint32_t	field_len;
	uint32_t	kind;
} PgtpEvent;

/* Shared with src/guard/flat.rs (#[repr(C)] Output). */
typedef struct
{
	PgtpEvent  *events;
	size_t		len;
	size_t		cap;
	int			status;			/* 0 ok, 1 syntax error, 2 too deep, 3 other,
								 * 4 too large */
	char	   *message;		/* malloc'd error message, or NULL */
	MemoryContext ctx;			/* the parse tree's memory */
	/* While writing: the field the next event is stored under. */
	const char *field;
	uint32_t	field_len;
	uint32_t	depth;
	uint32_t	max_depth;
	size_t		max_events;
} PgtpFlat;

#define LIT(s) s, (uint32_t) (sizeof(s) - 1)

static void
flat_push(PgtpFlat *out, uint32_t kind, const char *name, uint32_t name_len, int64_t ival)
{
	PgtpEvent  *ev;

	if (out->len >= out->cap)
	{
		size_t		cap = out->cap ? out->cap * 2 : 256;
		PgtpEvent  *grown;

		if (out->len >= out->max_events)
			ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
							errmsg("parse tree too large")));
		grown = realloc(out->events, cap * sizeof(PgtpEvent));
		if (grown == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY),
							errmsg("out of memory")));
		out->events = grown;
		out->cap = cap;
	}
	ev = &out->events[out->len++];
	ev->name = name;
	ev->name_len = name_len;
	ev->field = out->field;
	ev->field_len = out->field_len;
	ev->ival = ival;
	ev->kind = kind;
}

static inline void
flat_field(PgtpFlat *out, const char *field, uint32_t len)
{
	out->field = field;
	out->field_len = len;
}

static void
flat_open(PgtpFlat *out, uint32_t kind, const char *name, uint32_t name_len)
{
	if (++out->depth > out->max_depth)
		ereport(ERROR, (errcode(ERRCODE_STATEMENT_TOO_COMPLEX),
						errmsg("parse tree nested too deeply")));
	flat_push(out, kind, name, name_len, 0);
}

static void
flat_close(PgtpFlat *out)
{
	out->depth--;
	flat_field(out, LIT(""));
	flat_push(out, PGTP_CLOSE, NULL, 0, 0);
}

static inline void
flat_int(PgtpFlat *out, const char *field, uint32_t field_len, int64_t v)
{
	if (v != 0)
	{
		flat_field(out, field, field_len);
		flat_push(out, PGTP_INT, NULL, 0, v);
	}
}

static inline void
flat_str(PgtpFlat *out, const char *field, uint32_t field_len, const char *s)
{
	if (s != NULL && s[0] != '\0')
	{
		flat_field(out, field, field_len);
		flat_push(out, PGTP_STR, s, (uint32_t) strlen(s), 0);
	}
}

static inline void
flat_true(PgtpFlat *out, const char *field, uint32_t field_len, bool v)
{
	if (v)
	{
		flat_field(out, field, field_len);
		flat_push(out, PGTP_TRUE, NULL, 0, 0);
	}
}

#define OUT_TYPE(typename, typename_c) PgtpFlat *

#define OUT_NODE(typename, typename_c, typename_underscore, typename_underscore_upcase, typename_cast, fldname) \
	{ \
		flat_open(out, PGTP_STRUCT, LIT(CppAsString(typename_c))); \
		_out##typename_c(out, (const typename_cast *) obj); \
		flat_close(out); \
	}

#define WRITE_INT_FIELD(msgtype, outname, outname_json, fldname) \
	flat_int(out, LIT(CppAsString(outname)), (int64_t) node->fldname);
#define WRITE_UINT_FIELD(msgtype, outname, outname_json, fldname) \
	flat_int(out, LIT(CppAsString(outname)), (int64_t) node->fldname);
#define WRITE_UINT64_FIELD(msgtype, outname, outname_json, fldname) \
	flat_int(out, LIT(CppAsString(outname)), \
			 node->fldname > (uint64) INT64_MAX ? INT64_MAX : (int64_t) node->fldname);
#define WRITE_LONG_FIELD(msgtype, outname, outname_json, fldname) \
	flat_int(out, LIT(CppAsString(outname)), (int64_t) node->fldname);
/* No policy reads a float field (they are cost estimates). */
#define WRITE_FLOAT_FIELD(msgtype, outname, outname_json, fldname)
#define WRITE_BOOL_FIELD(msgtype, outname, outname_json, fldname) \
	flat_true(out, LIT(CppAsString(outname)), node->fldname);

#define WRITE_CHAR_FIELD(msgtype, outname, outname_json, fldname) \
	if (node->fldname != 0) { \
		flat_field(out, LIT(CppAsString(outname))); \
		flat_push(out, PGTP_STR, &node->fldname, 1, 0); \
	}

#define WRITE_STRING_FIELD(msgtype, outname, outname_json, fldname) \
	flat_str(out, LIT(CppAsString(outname)), node->fldname);

#define WRITE_ENUM_FIELD(msgtype, enumtype, outname, outname_json, fldname) \
	flat_int(out, LIT(CppAsString(outname)), _enumToInt##enumtype(node->fldname));

#define WRITE_LIST_FIELD(msgtype, outname, outname_json, fldname) \
	{ \
		flat_field(out, LIT(CppAsString(outname))); \
		flat_list(out, node->fldname); \
	}

#define WRITE_BITMAPSET_FIELD(msgtype, outname, outname_json, fldname) \
	{ \
		int __x = -1; \
		flat_field(out, LIT(CppAsString(outname))); \
		flat_open(out, PGTP_SEQ, NULL, 0); \
		while ((__x = bms_next_member(node->fldname, __x)) >= 0) \
			flat_int(out, LIT(""), __x); \
		flat_close(out); \
	}

#define WRITE_NODE_FIELD(msgtype, outname, outname_json, fldname) \
	{ \
		flat_field(out, LIT(CppAsString(outname))); \
		_outNode(out, &node->fldname); \
	}

#define WRITE_NODE_PTR_FIELD(msgtype, outname, outname_json, fldname) \
	if (node->fldname != NULL) { \
		flat_field(out, LIT(CppAsString(outname))); \
		_outNode(out, node->fldname); \
	}

#define WRITE_SPECIFIC_NODE_FIELD(msgtype, typename, typename_underscore, outname, outname_json, fldname) \
	{ \
		flat_field(out, LIT(CppAsString(outname))); \
		flat_open(out, PGTP_STRUCT, LIT(CppAsString(typename))); \
		_out##typename(out, &node->fldname); \
		flat_close(out); \
	}

/* Recurses without passing through _outNode, so checks the stack here. */
#define WRITE_SPECIFIC_NODE_PTR_FIELD(msgtype, typename, typename_underscore, outname, outname_json, fldname) \
	if (node->fldname != NULL) { \
		check_stack_depth(); \
		flat_field(out, LIT(CppAsString(outname))); \
		flat_open(out, PGTP_STRUCT, LIT(CppAsString(typename))); \
		_out##typename(out, node->fldname); \
		flat_close(out); \
	}

static void _outNode(PgtpFlat *out, const void *obj);

/* A repeated Node field: always a list, NULL elements write nothing. */
static void
flat_list(PgtpFlat *out, const List *list)
{
	const ListCell *lc;

	flat_open(out, PGTP_SEQ, NULL, 0);
	foreach(lc, list)
	{
		flat_field(out, LIT(""));
		_outNode(out, lfirst(lc));
	}
	flat_close(out);
}

static void
_outList(PgtpFlat *out, const List *node)
{
	flat_field(out, LIT("items"));
	flat_list(out, node);
}

/* IntList and OidList have the same message shape as List. */
static void
_outIntList(PgtpFlat *out, const List *node)
{
	_outList(out, node);
}

static void
_outOidList(PgtpFlat *out, const List *node)
{
	_outList(out, node);
}

static void
_outInteger(PgtpFlat *out, const Integer *node)
{
	flat_int(out, LIT("ival"), node->ival);
}

static void
_outFloat(PgtpFlat *out, const Float *node)
{
	flat_str(out, LIT("fval"), node->fval);
}

static void
_outBoolean(PgtpFlat *out, const Boolean *node)
{
	flat_true(out, LIT("boolval"), node->boolval);
}

static void
_outString(PgtpFlat *out, const String *node)
{
	flat_str(out, LIT("sval"), node->sval);
}

static void
_outBitString(PgtpFlat *out, const BitString *node)
{
	flat_str(out, LIT("bsval"), node->bsval);
}

/* As the protobuf message: isnull, location, then the value oneof. */
static void
_outAConst(PgtpFlat *out, const A_Const *node)
{
	flat_true(out, LIT("isnull"), node->isnull);
	flat_int(out, LIT("location"), node->location);
	if (node->isnull)
		return;
	flat_field(out, LIT("val"));
	switch (nodeTag(&node->val.node))
	{
		case T_Integer:
			flat_open(out, PGTP_STRUCT, LIT("Integer"));
			_outInteger(out, &node->val.ival);
			break;
		case T_Float:
			flat_open(out, PGTP_STRUCT, LIT("Float"));
			_outFloat(out, &node->val.fval);
			break;
		case T_Boolean:
			flat_open(out, PGTP_STRUCT, LIT("Boolean"));
			_outBoolean(out, &node->val.boolval);
			break;
		case T_String:
			flat_open(out, PGTP_STRUCT, LIT("String"));
			_outString(out, &node->val.sval);
			break;
		case T_BitString:
			flat_open(out, PGTP_STRUCT, LIT("BitString"));
			_outBitString(out, &node->val.bsval);
			break;
		default:
			elog(ERROR, "unexpected A_Const value");
	}
	flat_close(out);
}

#include "pg_query_enum_defs.c"
#include "pg_query_outfuncs_defs.c"

static void
_outNode(PgtpFlat *out, const void *obj)
{
	check_stack_depth();

	if (obj == NULL)
		return;

	switch (nodeTag(obj))
	{
#include "pg_query_outfuncs_conds.c"

		default:
			/* Fail closed: a node kind this backend cannot write. */
			elog(ERROR, "unrecognized node type: %d", (int) nodeTag(obj));
	}
}

/*
 * Records the error being handled: too deep (our depth limit or PostgreSQL's
 * stack check, both 54001), too large (54000) or other.
 */
static void
flat_error(PgtpFlat *out)
{
	ErrorData  *error_data;

	MemoryContextSwitchTo(out->ctx);
	error_data = CopyErrorData();
	if (error_data->sqlerrcode == ERRCODE_STATEMENT_TOO_COMPLEX)
		out->status = 2;
	else if (error_data->sqlerrcode == ERRCODE_PROGRAM_LIMIT_EXCEEDED)
		out->status = 4;
	else
		out->status = 3;
	out->message = strdup(error_data->message ? error_data->message : "error");
	FlushErrorState();
}

/*
 * Parses `input` (NUL-terminated) with PostgreSQL's grammar and writes one
 * event tree per statement. Limits: `max_depth` open structs/lists,
 * `max_events` events. Always call pgtp_flat_free(out) afterwards.
 */
void
pgtp_flat_parse(const char *input, uint32_t max_depth, size_t max_events, PgtpFlat *out)
{
	PgQueryInternalParsetreeAndError parsed;

	memset(out, 0, sizeof(*out));
	out->max_depth = max_depth;
	out->max_events = max_events;
	flat_field(out, LIT(""));
	out->ctx = pg_query_enter_memory_context();

	parsed = pg_query_raw_parse(input, PG_QUERY_PARSE_DEFAULT);
	if (parsed.stderr_buffer != NULL)
		free(parsed.stderr_buffer);
	if (parsed.error != NULL)
	{
		out->status = 1;
		out->message = strdup(parsed.error->message ? parsed.error->message : "syntax error");
		pg_query_free_error(parsed.error);
		return;
	}

	PG_TRY();
	{
		const ListCell *lc;

		foreach(lc, parsed.tree)
		{
			const RawStmt *raw = lfirst(lc);

			flat_field(out, LIT(""));
			if (raw == NULL || raw->stmt == NULL)
				flat_push(out, PGTP_NO_STMT, NULL, 0, 0);
			else
				_outNode(out, raw->stmt);
		}
	}
	PG_CATCH();
	{
		flat_error(out);
	}
	PG_END_TRY();
}

void
pgtp_flat_free(PgtpFlat *out)
{
	if (out->ctx != NULL)
		pg_query_exit_memory_context(out->ctx);
	out->ctx = NULL;
	free(out->events);
	out->events = NULL;
	free(out->message);
	out->message = NULL;
	out->len = 0;
	out->cap = 0;
}
