/*-------------------------------------------------------------------------
 * dag.c
 *	  Graph checks on a template's steps: topological order, and the steps
 *	  on a cycle when there is one.
 *
 * Runs in O(V + E) so that a template of many thousand steps registers as
 * quickly as a small one.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

/*
 * ReportCycle finds one cycle among the nodes Kahn's algorithm could not
 * order and raises an error that names its steps in order.
 */
static void
ReportCycle(int n, const bool *ordered, const int *parent_start,
			const int *parent_list, Datum *names)
{
	int		   *seen_at = palloc(sizeof(int) * n);
	int		   *walk = palloc(sizeof(int) * (n + 1));
	int			len = 0;
	int			node = -1;
	int			i;
	StringInfoData buf;

	for (i = 0; i < n; i++)
	{
		seen_at[i] = -1;
		if (!ordered[i] && node < 0)
			node = i;
	}
	Assert(node >= 0);

	/*
	 * Every unordered node has an unordered parent: follow parents until a
	 * node repeats; the walk from its first visit is a cycle.
	 */
	while (seen_at[node] < 0)
	{
		int			next = -1;

		seen_at[node] = len;
		walk[len++] = node;
		for (i = parent_start[node]; i < parent_start[node + 1]; i++)
			if (!ordered[parent_list[i]])
			{
				next = parent_list[i];
				break;
			}
		Assert(next >= 0);
		node = next;
	}

	/* The walk goes child -> parent; print it parent -> child. */
	initStringInfo(&buf);
	for (i = len - 1; i >= seen_at[node]; i--)
		appendStringInfo(&buf, "%s -> ", TextDatumGetCString(names[walk[i]]));
	appendStringInfoString(&buf, TextDatumGetCString(names[walk[len - 1]]));

	ereport(ERROR,
			(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
			 errmsg("dependency cycle among steps: %s", buf.data),
			 errhint("A template must be a directed acyclic graph.")));
}

static int *
IntArrayContents(ArrayType *array, int *count)
{
	if (ARR_NDIM(array) == 0)
	{
		*count = 0;
		return NULL;
	}
	if (ARR_NDIM(array) != 1 || ARR_HASNULL(array) || ARR_ELEMTYPE(array) != INT4OID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("edge arrays must be one-dimensional integer arrays without nulls")));
	*count = ArrayGetNItems(ARR_NDIM(array), ARR_DIMS(array));
	return (int *) ARR_DATA_PTR(array);
}

PG_FUNCTION_INFO_V1(tasker_topological_order);

/*
 * tasker_topological_order is tasker._topological_order(names, from, to):
 * node indexes are 1-based; the result lists them parents first, keeping
 * the declared order among nodes that are free to go.
 */
Datum
tasker_topological_order(PG_FUNCTION_ARGS)
{
	ArrayType  *names_array = PG_GETARG_ARRAYTYPE_P(0);
	int			n_from;
	int			n_to;
	int		   *edge_from = IntArrayContents(PG_GETARG_ARRAYTYPE_P(1), &n_from);
	int		   *edge_to = IntArrayContents(PG_GETARG_ARRAYTYPE_P(2), &n_to);
	Datum	   *names;
	bool	   *name_nulls;
	int			n;
	int		   *child_start;
	int		   *child_list;
	int		   *parent_start;
	int		   *parent_list;
	int		   *fill;
	int		   *indegree;
	bool	   *ordered;
	int		   *heap;			/* a min-heap keeps declared order */
	int			heap_len = 0;
	Datum	   *result;
	int			done = 0;
	int			i;

	deconstruct_array(names_array, TEXTOID, -1, false, TYPALIGN_INT,
					  &names, &name_nulls, &n);
	if (n_from != n_to)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("edge arrays differ in length: %d and %d", n_from, n_to)));
	for (i = 0; i < n_from; i++)
		if (edge_from[i] < 1 || edge_from[i] > n || edge_to[i] < 1 || edge_to[i] > n)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("edge %d -> %d names no node", edge_from[i], edge_to[i])));

	/* adjacency in compressed form, both directions */
	child_start = palloc0(sizeof(int) * (n + 1));
	parent_start = palloc0(sizeof(int) * (n + 1));
	child_list = palloc(sizeof(int) * Max(n_from, 1));
	parent_list = palloc(sizeof(int) * Max(n_from, 1));
	fill = palloc0(sizeof(int) * (n + 1));
	indegree = palloc0(sizeof(int) * (n + 1));
	ordered = palloc0(sizeof(bool) * (n + 1));
	heap = palloc(sizeof(int) * (n + 1));
	result = palloc(sizeof(Datum) * (n + 1));

	for (i = 0; i < n_from; i++)
	{
		child_start[edge_from[i]]++;
		parent_start[edge_to[i]]++;
		indegree[edge_to[i] - 1]++;
	}
	for (i = 1; i <= n; i++)
	{
		child_start[i] += child_start[i - 1];
		parent_start[i] += parent_start[i - 1];
	}
	for (i = 0; i < n_from; i++)
	{
		int			f = edge_from[i] - 1;
		int			t = edge_to[i] - 1;

		child_list[child_start[f] + fill[f]++] = t;
	}
	memset(fill, 0, sizeof(int) * (n + 1));
	for (i = 0; i < n_from; i++)
	{
		int			f = edge_from[i] - 1;
		int			t = edge_to[i] - 1;

		parent_list[parent_start[t] + fill[t]++] = f;
	}

	for (i = 0; i < n; i++)
		if (indegree[i] == 0)
			heap[heap_len++] = i;	/* ascending: already a heap */

	while (heap_len > 0)
	{
		int			node = heap[0];
		int			pos;
		int			c;

		/* pop the smallest */
		heap[0] = heap[--heap_len];
		for (pos = 0;;)
		{
			int			l = 2 * pos + 1;
			int			smallest = pos;

			if (l < heap_len && heap[l] < heap[smallest])
				smallest = l;
			if (l + 1 < heap_len && heap[l + 1] < heap[smallest])
				smallest = l + 1;
			if (smallest == pos)
				break;
			c = heap[pos];
			heap[pos] = heap[smallest];
			heap[smallest] = c;
			pos = smallest;
		}

		ordered[node] = true;
		result[done++] = Int32GetDatum(node + 1);
		for (c = child_start[node]; c < child_start[node + 1]; c++)
		{
			int			child = child_list[c];

			if (--indegree[child] == 0)
			{
				/* push */
				pos = heap_len++;
				heap[pos] = child;
				while (pos > 0 && heap[(pos - 1) / 2] > heap[pos])
				{
					int			tmp = heap[pos];

					heap[pos] = heap[(pos - 1) / 2];
					heap[(pos - 1) / 2] = tmp;
					pos = (pos - 1) / 2;
				}
			}
		}
	}

	if (done < n)
		ReportCycle(n, ordered, parent_start, parent_list, names);

	PG_RETURN_ARRAYTYPE_P(construct_array(result, n, INT4OID, sizeof(int32),
										  true, TYPALIGN_INT));
}
