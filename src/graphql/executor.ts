import type { DocumentNode, ExecutionResult, GraphQLSchema } from 'graphql'

/** A compiled operation run with a context and its variables (coerced and checked by the compiled code). */
export type Run = (
  context: object,
  variables: Record<string, unknown> | null | undefined,
) => Promise<ExecutionResult> | ExecutionResult

/**
 * The one executor of plain operations, shared by the REST routes and GraphQL's single JSON queries (see
 * direct.ts): a document is compiled once to plain functions (graphql-jit), so the same resolvers run
 * without graphql-js walking the document again on every request. The compiler is loaded the first time
 * something is compiled: a server that only takes uploads never loads it.
 */
let jit: Promise<typeof import('graphql-jit')> | undefined

/** Compiles a validated document; rejects with the compiler's errors (a document it cannot take). */
export async function compile(
  schema: GraphQLSchema,
  document: DocumentNode,
  operationName?: string | null,
): Promise<Run> {
  const { compileQuery, isCompiledQuery } = await (jit ??= import('graphql-jit'))
  const query = compileQuery(schema, document, operationName ?? undefined)
  if (!isCompiledQuery(query)) throw new Error(JSON.stringify(query.errors))
  return (context, variables) => query.query(undefined, context, variables ?? {})
}
