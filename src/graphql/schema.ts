import { makeExecutableSchema } from '@graphql-tools/schema'
import { GraphQLScalarType } from 'graphql'
import { readFileSync } from 'node:fs'
import type { Context } from './context.js'
import { resolvers } from './resolvers.js'

/** The SDL in schema/ is the one source of truth; resolvers are typed from it by codegen. */
export const typeDefs = readFileSync(new URL('../../schema/schema.graphql', import.meta.url), 'utf8')

/**
 * A scalar's behaviour comes from its GraphQLScalarType, its description from the SDL. (Handed over whole,
 * the type's own empty description would replace the SDL's, and introspection, GraphiQL's docs and codegen
 * from the URL would lose it.)
 */
function behaviourOnly(value: unknown): unknown {
  if (!(value instanceof GraphQLScalarType)) return value
  const { serialize, parseValue, parseLiteral } = value.toConfig()
  return { serialize, parseValue, parseLiteral }
}

type ResolverMap = NonNullable<Parameters<typeof makeExecutableSchema<Context>>[0]['resolvers']>

export const schema = makeExecutableSchema<Context>({
  typeDefs,
  resolvers: Object.fromEntries(
    Object.entries(resolvers).map(([name, value]) => [name, behaviourOnly(value)]),
  ) as ResolverMap,
})
