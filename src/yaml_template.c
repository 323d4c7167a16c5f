/*-------------------------------------------------------------------------
 * yaml_template.c
 *	  tasker.yaml_to_jsonb(text): one YAML document as jsonb, parsed with
 *	  libyaml.  tasker.register_template_yaml (src/sql/75_yaml.sql) maps the
 *	  result from the Rails engine's task-handler format to a template.
 *
 * The libyaml event stream is read into a small tree in palloc'd memory
 * (aliases share the anchored node), which is then pushed into a jsonb.
 * libyaml's parser and its current event are malloc'd: PG_FINALLY frees
 * them on every path, so an error anywhere never leaks them.
 *
 * Plain (unquoted, untagged) scalars are typed by YAML 1.1 rules as the
 * Rails engine's Psych reads them: null, booleans (true/yes/on,
 * false/no/off, but not y/n), integers (decimal, 0x hex, 0b binary, 0
 * octal), floats.  Quoted and block scalars stay strings; the core tags
 * !!str, !!int, !!float, !!bool and !!null force a type.  The merge key
 * "<<" is applied.  doc/yaml.md lists every rule.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <yaml.h>

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

/* Aliases may add at most this many values to the document (billion laughs). */
#define YAML_MAX_ALIAS_VALUES	1000000

#define YAML_TAG_PREFIX "tag:yaml.org,2002:"

typedef enum YamlNodeKind
{
	YAML_NODE_SCALAR,
	YAML_NODE_SEQUENCE,
	YAML_NODE_MAPPING
} YamlNodeKind;

struct YamlNode;

/* One key and value of a mapping. */
typedef struct YamlPair
{
	char	   *key;			/* in the server encoding */
	int			keylen;
	int			line;			/* where the key is, 1-based */
	int			column;
	int			order;			/* position, to keep sorts stable */
	struct YamlNode *value;
} YamlPair;

/* One node of the document; an alias is the node it names. */
typedef struct YamlNode
{
	YamlNodeKind kind;
	int			line;			/* where the node starts, 1-based */
	int			column;
	bool		complete;		/* false while its content is being read */
	int64		size;			/* values in the node, aliases expanded */

	/* scalars */
	JsonbValue	value;			/* typed */
	char	   *text;			/* as written, in the server encoding */
	int			textlen;
	bool		is_merge_key;	/* a plain "<<" or !!merge */

	/* sequences */
	int			nitems;
	struct YamlNode **items;

	/* mappings */
	int			npairs;
	YamlPair   *pairs;
} YamlNode;

typedef struct YamlAnchor
{
	char	   *name;
	YamlNode   *node;
} YamlAnchor;

/* The parser, its current event and what has been read so far. */
typedef struct YamlReader
{
	yaml_parser_t parser;
	yaml_event_t event;
	bool		have_event;		/* event holds libyaml memory */
	List	   *anchors;		/* of YamlAnchor, newest last */
	int64		parsed;			/* values written in the source */
	int64		merged;			/* pairs copied by merge keys */
	YamlNode   *root;
} YamlReader;

static YamlNode *ReadNode(YamlReader *r, bool as_key);

/* SaturatingAdd adds two sizes, stopping at a bound far above any limit. */
static int64
SaturatingAdd(int64 a, int64 b)
{
	const int64 cap = PG_INT64_MAX / 4;

	return (a >= cap || b >= cap || a + b >= cap) ? cap : a + b;
}

/* ReportAliasLimit raises that aliases make the document too large. */
static void
pg_attribute_noreturn()
ReportAliasLimit(int64 parsed, int64 expanded)
{
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("YAML aliases expand the document by more than %d values",
					YAML_MAX_ALIAS_VALUES),
			 errdetail("The document writes " INT64_FORMAT " values; its aliases and merge keys add at least " INT64_FORMAT ".",
					   parsed, expanded)));
}

/*
 * ReportParserError raises libyaml's description of why the input is not
 * YAML, with the line and column of the problem.
 */
static void
pg_attribute_noreturn()
ReportParserError(yaml_parser_t *parser)
{
	const char *problem = parser->problem ? parser->problem : "unknown error";

	switch (parser->error)
	{
		case YAML_MEMORY_ERROR:
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory while parsing YAML")));
			break;
		case YAML_READER_ERROR:
			if (parser->problem_value != -1)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
						 errmsg("invalid YAML: %s (#%X) at byte %zu",
								problem, parser->problem_value,
								parser->problem_offset)));
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("invalid YAML: %s at byte %zu",
							problem, parser->problem_offset)));
			break;
		default:
			if (parser->context)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
						 errmsg("invalid YAML: %s at line %zu, column %zu",
								problem, parser->problem_mark.line + 1,
								parser->problem_mark.column + 1),
						 errdetail("Found %s that starts at line %zu, column %zu.",
								   parser->context, parser->context_mark.line + 1,
								   parser->context_mark.column + 1)));
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("invalid YAML: %s at line %zu, column %zu",
							problem, parser->problem_mark.line + 1,
							parser->problem_mark.column + 1)));
	}
	pg_unreachable();
}

/*
 * ReadEvent frees the current event and reads the next one.
 */
static void
ReadEvent(YamlReader *r)
{
	CHECK_FOR_INTERRUPTS();
	if (r->have_event)
	{
		yaml_event_delete(&r->event);
		r->have_event = false;
	}
	if (!yaml_parser_parse(&r->parser, &r->event))
		ReportParserError(&r->parser);
	r->have_event = true;
}

/*
 * ServerString copies libyaml's UTF-8 text into palloc'd memory in the
 * server encoding.  jsonb cannot hold a NUL character, which YAML's "\0"
 * escape can write.
 */
static char *
ServerString(const yaml_char_t *value, size_t length, int *outlen,
			 const yaml_mark_t *mark)
{
	char	   *s;

	if (memchr(value, '\0', length) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNTRANSLATABLE_CHARACTER),
				 errmsg("YAML string at line %zu, column %zu contains a NUL character",
						mark->line + 1, mark->column + 1),
				 errdetail("jsonb strings cannot contain \\0.")));
	if (length > MaxAllocSize - 1)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("YAML string at line %zu, column %zu is too long",
						mark->line + 1, mark->column + 1)));
	s = pg_any_to_server((const char *) value, (int) length, PG_UTF8);
	if (s == (const char *) value)
		s = pnstrdup((const char *) value, length);
	*outlen = strlen(s);
	return s;
}

/* NewNode makes a node at the current event's position (not yet counted). */
static YamlNode *
NewNode(YamlReader *r, YamlNodeKind kind)
{
	YamlNode   *node = palloc0(sizeof(YamlNode));

	node->kind = kind;
	node->line = (int) r->event.start_mark.line + 1;
	node->column = (int) r->event.start_mark.column + 1;
	node->size = 1;
	return node;
}

/* AddAnchor records an anchor (YAML lets a later one reuse the name). */
static void
AddAnchor(YamlReader *r, const yaml_char_t *anchor, YamlNode *node)
{
	YamlAnchor *a;

	if (anchor == NULL)
		return;
	a = palloc(sizeof(YamlAnchor));
	a->name = pstrdup((const char *) anchor);
	a->node = node;
	r->anchors = lappend(r->anchors, a);
}

/* FindAnchor returns the newest node of that anchor name, or NULL. */
static YamlNode *
FindAnchor(YamlReader *r, const char *name)
{
	int			i;

	for (i = list_length(r->anchors) - 1; i >= 0; i--)
	{
		YamlAnchor *a = list_nth(r->anchors, i);

		if (strcmp(a->name, name) == 0)
			return a->node;
	}
	return NULL;
}

/* Text helpers for scalar resolution ----------------------------------- */

/* TextIs tells whether the text is exactly word. */
static bool
TextIs(const char *s, int len, const char *word)
{
	return strlen(word) == (size_t) len && memcmp(s, word, len) == 0;
}

/* TextIsAny tells whether the text is one of a NULL-terminated list. */
static bool
TextIsAny(const char *s, int len, const char *const *words)
{
	for (; *words; words++)
		if (TextIs(s, len, *words))
			return true;
	return false;
}

static const char *const null_words[] = {"~", "null", "Null", "NULL", NULL};
static const char *const true_words[] = {"true", "True", "TRUE", "yes", "Yes", "YES",
"on", "On", "ON", NULL};
static const char *const false_words[] = {"false", "False", "FALSE", "no", "No", "NO",
"off", "Off", "OFF", NULL};
static const char *const special_floats[] = {".inf", ".Inf", ".INF", "+.inf", "+.Inf",
	"+.INF", "-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN", NULL};

/* DigitValue is a character's value in the base, or -1. */
static int
DigitValue(char c, int base)
{
	int			v;

	if (c >= '0' && c <= '9')
		v = c - '0';
	else if (c >= 'a' && c <= 'f')
		v = c - 'a' + 10;
	else if (c >= 'A' && c <= 'F')
		v = c - 'A' + 10;
	else
		return -1;
	return v < base ? v : -1;
}

/*
 * IntegerText returns the decimal text of a YAML 1.1 integer
 * ([-+]?(0|[1-9][0-9_]*), 0x hex, 0b binary, 0 octal; "_" separates
 * digits), or NULL when the text is not one.
 */
static char *
IntegerText(const char *s, int len, const YamlNode *node)
{
	bool		negative = false;
	int			base = 10;
	int			i = 0;
	int			digits = 0;
	uint64		value = 0;
	StringInfoData buf;

	if (i < len && (s[i] == '-' || s[i] == '+'))
		negative = (s[i++] == '-');
	if (i >= len || !isdigit((unsigned char) s[i]))
		return NULL;

	if (s[i] == '0' && i + 1 < len)
	{
		if (s[i + 1] == 'x')
			base = 16, i += 2;
		else if (s[i + 1] == 'b')
			base = 2, i += 2;
		else
			base = 8, i += 1;
	}
	else if (s[i] == '0')
		return negative ? pstrdup("-0") : pstrdup("0");

	if (base == 10)
	{
		initStringInfo(&buf);
		if (negative)
			appendStringInfoChar(&buf, '-');
		for (; i < len; i++)
		{
			if (isdigit((unsigned char) s[i]))
				appendStringInfoChar(&buf, s[i]);
			else if (s[i] != '_')
			{
				pfree(buf.data);
				return NULL;
			}
		}
		return buf.data;
	}

	for (; i < len; i++)
	{
		int			d;

		if (s[i] == '_')
			continue;
		d = DigitValue(s[i], base);
		if (d < 0)
			return NULL;
		if (value > (PG_UINT64_MAX - d) / base)
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("YAML integer \"%.*s\" at line %d, column %d is out of range",
							len, s, node->line, node->column),
					 errdetail("Hexadecimal, octal and binary integers are limited to 64 bits.")));
		value = value * base + d;
		digits++;
	}
	if (digits == 0)
		return NULL;
	return psprintf("%s" UINT64_FORMAT, negative ? "-" : "", value);
}

/*
 * FloatText returns the text of a YAML float ([-+]?[0-9][0-9_]*.[0-9_]*,
 * [-+]?.[0-9_]+, either with an exponent, or digits with an exponent) for
 * numeric_in, or NULL when the text is not one.  .inf and .nan are
 * errors: JSON has no such numbers.
 */
static char *
FloatText(const char *s, int len, const YamlNode *node)
{
	int			i = 0;
	int			mantissa_digits = 0;
	bool		point = false;
	bool		exponent = false;
	StringInfoData buf;

	if (TextIsAny(s, len, special_floats))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("YAML value \"%.*s\" at line %d, column %d is not a finite number",
						len, s, node->line, node->column),
				 errdetail("JSON has no infinity or NaN."),
				 errhint("Quote the value to keep it as a string.")));

	initStringInfo(&buf);
	if (i < len && (s[i] == '-' || s[i] == '+'))
	{
		if (s[i] == '-')
			appendStringInfoChar(&buf, '-');
		i++;
	}
	/* the integer part, if any, starts with a digit */
	if (i < len && s[i] == '_')
		goto not_float;
	for (; i < len; i++)
	{
		if (isdigit((unsigned char) s[i]))
		{
			appendStringInfoChar(&buf, s[i]);
			mantissa_digits++;
		}
		else if (s[i] == '.' && !point)
		{
			point = true;
			appendStringInfoChar(&buf, '.');
		}
		else if (s[i] == '_' && mantissa_digits > 0)
			continue;
		else
			break;
	}
	if (mantissa_digits == 0)
		goto not_float;
	if (i < len && (s[i] == 'e' || s[i] == 'E'))
	{
		int			exponent_digits = 0;

		exponent = true;
		appendStringInfoChar(&buf, 'e');
		i++;
		if (i < len && (s[i] == '-' || s[i] == '+'))
			appendStringInfoChar(&buf, s[i++]);
		for (; i < len && isdigit((unsigned char) s[i]); i++, exponent_digits++)
			appendStringInfoChar(&buf, s[i]);
		if (exponent_digits == 0)
			goto not_float;
	}
	if (i != len || (!point && !exponent))
		goto not_float;
	return buf.data;

not_float:
	pfree(buf.data);
	return NULL;
}

/* SetNumeric makes the node's value the number in text. */
static void
SetNumeric(YamlNode *node, const char *text)
{
	node->value.type = jbvNumeric;
	node->value.val.numeric =
		DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(text),
											ObjectIdGetDatum(InvalidOid),
											Int32GetDatum(-1)));
}

/* SetString makes the node's value its text. */
static void
SetString(YamlNode *node)
{
	node->value.type = jbvString;
	node->value.val.string.val = node->text;
	node->value.val.string.len = node->textlen;
}

/*
 * ResolvePlain types an untagged plain scalar: null, boolean, integer,
 * float, else string.
 */
static void
ResolvePlain(YamlNode *node)
{
	const char *s = node->text;
	int			len = node->textlen;
	char	   *number;

	if (len == 0 || TextIsAny(s, len, null_words))
		node->value.type = jbvNull;
	else if (TextIsAny(s, len, true_words) || TextIsAny(s, len, false_words))
	{
		node->value.type = jbvBool;
		node->value.val.boolean = TextIsAny(s, len, true_words);
	}
	else if ((number = IntegerText(s, len, node)) != NULL ||
			 (number = FloatText(s, len, node)) != NULL)
		SetNumeric(node, number);
	else
		SetString(node);
}

/* ShortTag writes a core-schema tag the way it is usually written, !!int. */
static const char *
ShortTag(const char *tag)
{
	size_t		prefix = strlen(YAML_TAG_PREFIX);

	if (strncmp(tag, YAML_TAG_PREFIX, prefix) == 0)
		return psprintf("!!%s", tag + prefix);
	return tag;
}

/* ReportBadTaggedValue raises that a tagged scalar does not fit its tag. */
static void
pg_attribute_noreturn()
ReportBadTaggedValue(const YamlNode *node, const char *tag)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("YAML value \"%s\" at line %d, column %d is not a valid %s",
					node->text, node->line, node->column, tag)));
}

/*
 * ResolveTagged types a scalar from its explicit tag: the core schema's
 * str, int, float, bool and null, or "!" (a string).
 */
static void
ResolveTagged(YamlNode *node, const char *tag)
{
	const char *s = node->text;
	int			len = node->textlen;
	char	   *number;

	if (strcmp(tag, "!") == 0 || strcmp(tag, YAML_TAG_PREFIX "str") == 0)
		SetString(node);
	else if (strcmp(tag, YAML_TAG_PREFIX "null") == 0)
	{
		if (len != 0 && !TextIsAny(s, len, null_words))
			ReportBadTaggedValue(node, "!!null");
		node->value.type = jbvNull;
	}
	else if (strcmp(tag, YAML_TAG_PREFIX "bool") == 0)
	{
		if (!TextIsAny(s, len, true_words) && !TextIsAny(s, len, false_words))
			ReportBadTaggedValue(node, "!!bool");
		node->value.type = jbvBool;
		node->value.val.boolean = TextIsAny(s, len, true_words);
	}
	else if (strcmp(tag, YAML_TAG_PREFIX "int") == 0)
	{
		if ((number = IntegerText(s, len, node)) == NULL)
			ReportBadTaggedValue(node, "!!int");
		SetNumeric(node, number);
	}
	else if (strcmp(tag, YAML_TAG_PREFIX "float") == 0)
	{
		if ((number = IntegerText(s, len, node)) == NULL &&
			(number = FloatText(s, len, node)) == NULL)
			ReportBadTaggedValue(node, "!!float");
		SetNumeric(node, number);
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("unsupported YAML tag \"%s\" at line %d, column %d",
						ShortTag(tag), node->line, node->column),
				 errhint("Scalars may be tagged !!str, !!int, !!float, !!bool or !!null; other tags have no JSON meaning.")));
}

/* CheckCollectionTag refuses tags other than the plain !!seq / !!map. */
static void
CheckCollectionTag(const YamlNode *node, const yaml_char_t *tag, const char *expected)
{
	if (tag == NULL || strcmp((const char *) tag, "!") == 0 ||
		strcmp((const char *) tag, expected) == 0)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("unsupported YAML tag \"%s\" at line %d, column %d",
					ShortTag((const char *) tag), node->line, node->column),
			 errhint("Sequences may only be tagged !!seq and mappings !!map.")));
}

/*
 * ReadScalar makes a node of the current scalar event.  A mapping key is
 * not typed: JSON keys are the text as written.
 */
static YamlNode *
ReadScalar(YamlReader *r, bool as_key)
{
	YamlNode   *node = NewNode(r, YAML_NODE_SCALAR);
	const char *tag = (const char *) r->event.data.scalar.tag;
	bool		plain = (r->event.data.scalar.style == YAML_PLAIN_SCALAR_STYLE);

	node->text = ServerString(r->event.data.scalar.value, r->event.data.scalar.length,
							  &node->textlen, &r->event.start_mark);
	if (!as_key)
		r->parsed++;
	if (as_key)
	{
		/* a key is not a value: it is neither typed nor counted */
		SetString(node);
		node->is_merge_key = TextIs(node->text, node->textlen, "<<") &&
			((tag == NULL && plain) ||
			 (tag != NULL && strcmp(tag, YAML_TAG_PREFIX "merge") == 0));
	}
	else if (tag != NULL)
		ResolveTagged(node, tag);
	else if (plain)
		ResolvePlain(node);
	else
		SetString(node);
	node->complete = true;
	AddAnchor(r, r->event.data.scalar.anchor, node);
	return node;
}

/* ReadSequence reads a sequence's items up to its end event. */
static YamlNode *
ReadSequence(YamlReader *r)
{
	YamlNode   *node = NewNode(r, YAML_NODE_SEQUENCE);
	int			capacity = 8;

	r->parsed++;
	CheckCollectionTag(node, r->event.data.sequence_start.tag, YAML_TAG_PREFIX "seq");
	AddAnchor(r, r->event.data.sequence_start.anchor, node);
	node->items = palloc(sizeof(YamlNode *) * capacity);
	for (;;)
	{
		YamlNode   *item;

		ReadEvent(r);
		if (r->event.type == YAML_SEQUENCE_END_EVENT)
			break;
		item = ReadNode(r, false);
		if (node->nitems == capacity)
		{
			capacity *= 2;
			node->items = repalloc(node->items, sizeof(YamlNode *) * capacity);
		}
		node->items[node->nitems++] = item;
		node->size = SaturatingAdd(node->size, item->size);
	}
	node->complete = true;
	return node;
}

/* ComparePairs orders pairs by key bytes, then by position. */
static int
ComparePairs(const void *a, const void *b)
{
	const YamlPair *pa = *(YamlPair *const *) a;
	const YamlPair *pb = *(YamlPair *const *) b;
	int			cmp = memcmp(pa->key, pb->key, Min(pa->keylen, pb->keylen));

	if (cmp != 0)
		return cmp;
	if (pa->keylen != pb->keylen)
		return pa->keylen < pb->keylen ? -1 : 1;
	return pa->order < pb->order ? -1 : (pa->order > pb->order ? 1 : 0);
}

/* SameKey tells whether two pairs have the same key. */
static bool
SameKey(const YamlPair *a, const YamlPair *b)
{
	return a->keylen == b->keylen && memcmp(a->key, b->key, a->keylen) == 0;
}

/* KeyWritten tells whether sorted (by ComparePairs) has the pair's key. */
static bool
KeyWritten(YamlPair **sorted, int n, const YamlPair *pair)
{
	int			lo = 0;
	int			hi = n - 1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		const YamlPair *m = sorted[mid];
		int			cmp = memcmp(pair->key, m->key, Min(pair->keylen, m->keylen));

		if (cmp == 0 && pair->keylen != m->keylen)
			cmp = pair->keylen < m->keylen ? -1 : 1;
		if (cmp == 0)
			return true;
		if (cmp < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return false;
}

/*
 * FinishMapping checks that the written keys are unique, then adds the
 * pairs of the merge sources ("<<") whose keys are not written: written
 * keys win, and an earlier source wins over a later one.
 */
static void
FinishMapping(YamlReader *r, YamlNode *node, YamlPair *pairs, int npairs, List *sources)
{
	YamlPair  **sorted = palloc(sizeof(YamlPair *) * Max(npairs, 1));
	YamlPair  **candidates;
	int			ncandidates = 0;
	int64		total = 0;
	int			i;
	ListCell   *lc;

	for (i = 0; i < npairs; i++)
		sorted[i] = &pairs[i];
	qsort(sorted, npairs, sizeof(YamlPair *), ComparePairs);
	for (i = 1; i < npairs; i++)
		if (SameKey(sorted[i - 1], sorted[i]))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("duplicate YAML key \"%s\" at line %d, column %d",
							sorted[i]->key, sorted[i]->line, sorted[i]->column),
					 errdetail("The key is first used at line %d, column %d.",
							   sorted[i - 1]->line, sorted[i - 1]->column)));

	node->pairs = pairs;
	node->npairs = npairs;
	if (sources != NIL)
	{
		/* merged pairs are copied: count them against the alias limit */
		foreach(lc, sources)
			total += ((YamlNode *) lfirst(lc))->npairs;
		r->merged += total;
		if (r->merged > YAML_MAX_ALIAS_VALUES)
			ReportAliasLimit(r->parsed, r->merged);

		candidates = palloc(sizeof(YamlPair *) * Max(total, 1));
		foreach(lc, sources)
		{
			YamlNode   *source = lfirst(lc);

			for (i = 0; i < source->npairs; i++)
			{
				YamlPair   *copy = palloc(sizeof(YamlPair));

				*copy = source->pairs[i];
				copy->order = ncandidates;
				candidates[ncandidates++] = copy;
			}
		}
		qsort(candidates, ncandidates, sizeof(YamlPair *), ComparePairs);

		node->pairs = palloc(sizeof(YamlPair) * (npairs + ncandidates));
		memcpy(node->pairs, pairs, sizeof(YamlPair) * npairs);
		for (i = 0; i < ncandidates; i++)
		{
			if (i > 0 && SameKey(candidates[i - 1], candidates[i]))
				continue;		/* an earlier source has it */
			if (KeyWritten(sorted, npairs, candidates[i]))
				continue;		/* written keys win */
			node->pairs[node->npairs++] = *candidates[i];
		}
	}

	for (i = 0; i < node->npairs; i++)
		node->size = SaturatingAdd(node->size, node->pairs[i].value->size);
}

/*
 * AddMergeSource adds the value of a "<<" key (a mapping, or a sequence
 * of mappings) to the merge sources.
 */
static List *
AddMergeSource(List *sources, YamlNode *value, const YamlPair *key)
{
	int			i;

	if (value->kind == YAML_NODE_MAPPING)
		return lappend(sources, value);
	if (value->kind == YAML_NODE_SEQUENCE)
	{
		for (i = 0; i < value->nitems; i++)
		{
			if (value->items[i]->kind != YAML_NODE_MAPPING)
				break;
			sources = lappend(sources, value->items[i]);
		}
		if (i == value->nitems)
			return sources;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("YAML merge key \"<<\" at line %d, column %d needs a mapping or a list of mappings",
					key->line, key->column)));
	return NIL;					/* keep the compiler quiet */
}

/* ReadMapping reads a mapping's pairs up to its end event. */
static YamlNode *
ReadMapping(YamlReader *r)
{
	YamlNode   *node = NewNode(r, YAML_NODE_MAPPING);
	int			capacity = 8;
	int			npairs = 0;
	YamlPair   *pairs;
	List	   *sources = NIL;

	r->parsed++;
	CheckCollectionTag(node, r->event.data.mapping_start.tag, YAML_TAG_PREFIX "map");
	AddAnchor(r, r->event.data.mapping_start.anchor, node);
	pairs = palloc(sizeof(YamlPair) * capacity);
	for (;;)
	{
		YamlNode   *key;
		YamlNode   *value;
		YamlPair	pair;

		ReadEvent(r);
		if (r->event.type == YAML_MAPPING_END_EVENT)
			break;
		pair.line = (int) r->event.start_mark.line + 1;
		pair.column = (int) r->event.start_mark.column + 1;
		key = ReadNode(r, true);
		if (key->kind != YAML_NODE_SCALAR)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("YAML mapping key at line %d, column %d is a %s",
							pair.line, pair.column,
							key->kind == YAML_NODE_MAPPING ? "mapping" : "sequence"),
					 errdetail("JSON object keys are strings: only scalar keys can be converted.")));
		ReadEvent(r);
		value = ReadNode(r, false);

		pair.key = key->text;
		pair.keylen = key->textlen;
		pair.order = npairs;
		pair.value = value;
		if (key->is_merge_key)
		{
			sources = AddMergeSource(sources, value, &pair);
			continue;
		}
		if (npairs == capacity)
		{
			capacity *= 2;
			pairs = repalloc(pairs, sizeof(YamlPair) * capacity);
		}
		pairs[npairs++] = pair;
	}
	FinishMapping(r, node, pairs, npairs, sources);
	node->complete = true;
	return node;
}

/*
 * ReadNode reads the node that starts with the current event (as_key: a
 * mapping key); on return the current event is the node's last one.
 */
static YamlNode *
ReadNode(YamlReader *r, bool as_key)
{
	YamlNode   *node;

	check_stack_depth();
	switch (r->event.type)
	{
		case YAML_SCALAR_EVENT:
			return ReadScalar(r, as_key);
		case YAML_SEQUENCE_START_EVENT:
			return ReadSequence(r);
		case YAML_MAPPING_START_EVENT:
			return ReadMapping(r);
		case YAML_ALIAS_EVENT:
			node = FindAnchor(r, (const char *) r->event.data.alias.anchor);
			if (node == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
						 errmsg("invalid YAML: alias \"*%s\" at line %zu, column %zu names no anchor",
								(const char *) r->event.data.alias.anchor,
								r->event.start_mark.line + 1, r->event.start_mark.column + 1),
						 errhint("An anchor (&name) must come before its aliases.")));
			if (!node->complete)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
						 errmsg("YAML alias \"*%s\" at line %zu, column %zu is inside the node it names",
								(const char *) r->event.data.alias.anchor,
								r->event.start_mark.line + 1, r->event.start_mark.column + 1),
						 errdetail("A recursive structure cannot be converted to JSON.")));
			return node;
		default:
			elog(ERROR, "unexpected YAML event %d", (int) r->event.type);
	}
	return NULL;				/* keep the compiler quiet */
}

/*
 * ReadStream reads a stream of at most one document: its root node, or
 * NULL for a stream without a document.
 */
static YamlNode *
ReadStream(YamlReader *r)
{
	YamlNode   *root;

	ReadEvent(r);
	if (r->event.type != YAML_STREAM_START_EVENT)
		elog(ERROR, "unexpected YAML event %d at the start", (int) r->event.type);
	ReadEvent(r);
	if (r->event.type == YAML_STREAM_END_EVENT)
		return NULL;
	if (r->event.type != YAML_DOCUMENT_START_EVENT)
		elog(ERROR, "unexpected YAML event %d before the document", (int) r->event.type);
	ReadEvent(r);
	root = ReadNode(r, false);
	ReadEvent(r);
	if (r->event.type != YAML_DOCUMENT_END_EVENT)
		elog(ERROR, "unexpected YAML event %d after the document", (int) r->event.type);
	ReadEvent(r);
	if (r->event.type == YAML_DOCUMENT_START_EVENT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("YAML stream has more than one document: the second starts at line %zu, column %zu",
						r->event.start_mark.line + 1, r->event.start_mark.column + 1),
				 errhint("Pass one document at a time.")));
	return root;
}

/*
 * ParseYaml parses UTF-8 text into a tree in the current memory context.
 * The parser and its event are freed on success and on error.
 */
static YamlNode *
ParseYaml(const char *data, size_t len, int64 *parsed)
{
	YamlReader *r = palloc0(sizeof(YamlReader));

	if (!yaml_parser_initialize(&r->parser))
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while starting the YAML parser")));
	PG_TRY();
	{
		yaml_parser_set_input_string(&r->parser, (const unsigned char *) data, len);
		r->root = ReadStream(r);
	}
	PG_FINALLY();
	{
		if (r->have_event)
			yaml_event_delete(&r->event);
		yaml_parser_delete(&r->parser);
	}
	PG_END_TRY();
	*parsed = r->parsed;
	return r->root;
}

/* PushNode adds a node to the jsonb being built, as token. */
static JsonbValue *
PushNode(JsonbParseState **state, YamlNode *node, JsonbIteratorToken token)
{
	JsonbValue	key;
	int			i;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	switch (node->kind)
	{
		case YAML_NODE_SCALAR:
			return pushJsonbValue(state, token, &node->value);
		case YAML_NODE_SEQUENCE:
			pushJsonbValue(state, WJB_BEGIN_ARRAY, NULL);
			for (i = 0; i < node->nitems; i++)
				PushNode(state, node->items[i], WJB_ELEM);
			return pushJsonbValue(state, WJB_END_ARRAY, NULL);
		case YAML_NODE_MAPPING:
			pushJsonbValue(state, WJB_BEGIN_OBJECT, NULL);
			for (i = 0; i < node->npairs; i++)
			{
				key.type = jbvString;
				key.val.string.val = node->pairs[i].key;
				key.val.string.len = node->pairs[i].keylen;
				pushJsonbValue(state, WJB_KEY, &key);
				PushNode(state, node->pairs[i].value, WJB_VALUE);
			}
			return pushJsonbValue(state, WJB_END_OBJECT, NULL);
	}
	return NULL;				/* keep the compiler quiet */
}

/* NodeToJsonb converts the tree; a scalar root becomes a raw scalar. */
static Jsonb *
NodeToJsonb(YamlNode *root)
{
	JsonbParseState *state = NULL;
	JsonbValue *result;

	if (root->kind == YAML_NODE_SCALAR)
	{
		JsonbValue	array;

		array.type = jbvArray;
		array.val.array.rawScalar = true;
		array.val.array.nElems = 1;
		pushJsonbValue(&state, WJB_BEGIN_ARRAY, &array);
		pushJsonbValue(&state, WJB_ELEM, &root->value);
		result = pushJsonbValue(&state, WJB_END_ARRAY, NULL);
	}
	else
		result = PushNode(&state, root, WJB_VALUE);
	return JsonbValueToJsonb(result);
}

PG_FUNCTION_INFO_V1(tasker_yaml_to_jsonb);

/*
 * tasker_yaml_to_jsonb is tasker.yaml_to_jsonb(yaml text): the document
 * as jsonb, or NULL when the text holds no document.
 */
Datum
tasker_yaml_to_jsonb(PG_FUNCTION_ARGS)
{
	text	   *yaml = PG_GETARG_TEXT_PP(0);
	const char *data = VARDATA_ANY(yaml);
	int			len = VARSIZE_ANY_EXHDR(yaml);
	char	   *utf8 = pg_server_to_any(data, len, PG_UTF8);
	int64		parsed;
	YamlNode   *root;

	if (utf8 != data)
		len = strlen(utf8);
	root = ParseYaml(utf8, len, &parsed);
	if (root == NULL)
		PG_RETURN_NULL();
	if (root->size - parsed > YAML_MAX_ALIAS_VALUES)
		ReportAliasLimit(parsed, root->size - parsed);
	PG_RETURN_JSONB_P(NodeToJsonb(root));
}
