/*-------------------------------------------------------------------------
 * limits.c
 *	  The documented size limits of templates, contexts and results
 *	  (tasker.max_template_steps, tasker.max_step_dependencies,
 *	  tasker.max_context_size, tasker.max_results_size), checked where the
 *	  data comes in.
 *
 * Why there are limits: a task gets a row per step and per edge of its
 * template, and every step's input document carries the task's context and
 * the results of each of its parents.  That document is one jsonb value,
 * and jsonb cannot hold more than 256 MB: a step whose input would be
 * larger can never be claimed, and the claims of its whole queue fail on
 * it.  The defaults keep the largest input (a 16 MB context and 200
 * parents' results of 1 MB each) under that bound.  1,000 steps keep the
 * statements that touch every step of a task (create, cancel, release a
 * fan-out) well under a second even under a poor plan: some of them cost
 * steps^2 while the planner's statistics do not know a new task yet (see
 * README, Limits).  Refusals raise SQLSTATE 54000 (program_limit_exceeded)
 * naming the setting.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "tasker.h"

/* One limit: its setting, where its value lives, and why it exists. */
typedef struct TaskerLimit
{
	const char *setting;
	int		   *value;
	bool		kilobytes;		/* a size in kB, compared with bytes */
	const char *unit;			/* what a count counts */
	const char *why;
} TaskerLimit;

static const TaskerLimit tasker_limits[] = {
	{"tasker.max_template_steps", &tasker_max_template_steps, false, "steps",
	"Every task of a template gets a row per step and per dependency, written when the task is created."},
	{"tasker.max_step_dependencies", &tasker_max_step_dependencies, false, "dependencies",
	"A step's input carries the results of each of its parents, and an input cannot exceed 256 MB."},
	{"tasker.max_context_size", &tasker_max_context_size, true, NULL,
	"Every step's input carries the task's context, and an input cannot exceed 256 MB."},
	{"tasker.max_results_size", &tasker_max_results_size, true, NULL,
	"The input of each child of a step carries the step's results, and an input cannot exceed 256 MB."},
};

/*
 * FindLimit returns the limit named by setting; an unknown name is a bug in
 * the install script.
 */
static const TaskerLimit *
FindLimit(const char *setting)
{
	int			i;

	for (i = 0; i < lengthof(tasker_limits); i++)
		if (strcmp(tasker_limits[i].setting, setting) == 0)
			return &tasker_limits[i];
	elog(ERROR, "unknown tasker limit \"%s\"", setting);
	return NULL;				/* keep the compiler quiet */
}

PG_FUNCTION_INFO_V1(tasker_check_count);

/*
 * tasker_check_count is tasker._check_count(setting, amount, what): raises
 * 54000 when amount exceeds the count limit named by setting; what names
 * the thing counted ("template \"ns.name\"", "step \"x\"").
 */
Datum
tasker_check_count(PG_FUNCTION_ARGS)
{
	char	   *setting = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int64		amount = PG_GETARG_INT64(1);
	char	   *what = text_to_cstring(PG_GETARG_TEXT_PP(2));
	const TaskerLimit *limit = FindLimit(setting);

	if (amount > *limit->value)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s has " INT64_FORMAT " %s, more than %s allows (%d)",
						what, amount, limit->unit, setting, *limit->value),
				 errdetail("%s", limit->why),
				 errhint("A superuser can raise %s.", setting)));
	PG_RETURN_VOID();
}

/*
 * TaskerCheckSize raises 54000 when the value's size, uncompressed, exceeds
 * the size limit named by setting; what names the value ("context",
 * "results of step 7").
 */
void
TaskerCheckSize(const char *setting, Datum value, const char *what)
{
	Size		size = toast_raw_datum_size(value);
	const TaskerLimit *limit = FindLimit(setting);

	Assert(limit->kilobytes);
	if (size > (Size) *limit->value * 1024)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is %zu bytes, more than %s allows (%d kB)",
						what, size, setting, *limit->value),
				 errdetail("%s", limit->why),
				 errhint("Store large data elsewhere and pass a reference, or have a superuser raise %s.",
						 setting)));
}

PG_FUNCTION_INFO_V1(tasker_check_size);

/* tasker_check_size is tasker._check_size(setting, value, what). */
Datum
tasker_check_size(PG_FUNCTION_ARGS)
{
	TaskerCheckSize(text_to_cstring(PG_GETARG_TEXT_PP(0)), PG_GETARG_DATUM(1),
					text_to_cstring(PG_GETARG_TEXT_PP(2)));
	PG_RETURN_VOID();
}
