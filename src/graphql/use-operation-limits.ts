import { EnvelopArmorPlugin } from '@escape.tech/graphql-armor'
import {
  getNamedType,
  getNullableType,
  GraphQLError,
  isListType,
  isObjectType,
  isInterfaceType,
  Kind,
  typeFromAST,
  type FieldNode,
  type GraphQLNamedType,
  type SelectionSetNode,
  type ValidationContext,
  type ValidationRule,
} from 'graphql'
import type { Plugin } from 'graphql-yoga'
import type { ErrorCode } from '../errors.js'
import { MAX_PAGE } from './resolvers.js'

/** The code of every refusal of an operation for its size or shape, whatever limit it crossed. */
export const TOO_COMPLEX = 'QUERY_TOO_COMPLEX' satisfies ErrorCode

/**
 * The most an operation may cost: each field of each item counts 1, so one full page of uploads
 * (`first: 1000`) with every Upload field and a `__typename` (21,001) fits, with room for the counts and
 * limits beside it. Two full pages with many fields do not.
 */
export const MAX_COST = 25_000

/**
 * How many items a list field is counted as. `first` as a literal is its page (capped at the maximum: a larger
 * one is refused by the resolver, with a message that says so). A variable may hold anything up to the
 * maximum, and no `first` at all (or a list without one, such as `files`) is every upload: both count as a
 * full page, so no way of writing the query is free.
 */
function itemsOf(field: FieldNode): number {
  const first = field.arguments?.find((argument) => argument.name.value === 'first')?.value
  if (first?.kind !== Kind.INT) return MAX_PAGE
  return Math.min(Math.max(Number(first.value), 0), MAX_PAGE)
}

const introspection = new Set(['__schema', '__type'])

/**
 * The cost of an operation, from its document alone (variables are not known yet when it is validated).
 * Fragments are costed once each (a fragment spread a thousand times inside another one spread a thousand
 * times must not take a thousand squared steps to price), and a fragment cycle, which graphql-js refuses
 * anyway, costs nothing here. Introspection (GraphiQL's schema query) is free.
 */
function costOf(context: ValidationContext, selections: SelectionSetNode, root: GraphQLNamedType): number {
  const fragments = new Map<string, number>()
  const schema = context.getSchema()
  const walk = (set: SelectionSetNode, type: GraphQLNamedType): number => {
    let cost = 0
    for (const selection of set.selections) {
      if (selection.kind === Kind.FIELD) {
        const name = selection.name.value
        if (introspection.has(name)) continue
        cost += 1
        const definition = isObjectType(type) || isInterfaceType(type) ? type.getFields()[name] : undefined
        if (!definition || !selection.selectionSet) continue
        const items = isListType(getNullableType(definition.type)) ? itemsOf(selection) : 1
        cost += items * walk(selection.selectionSet, getNamedType(definition.type))
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        const condition = selection.typeCondition && typeFromAST(schema, selection.typeCondition)
        cost += walk(selection.selectionSet, condition ?? type)
      } else {
        const name = selection.name.value
        let known = fragments.get(name)
        if (known === undefined) {
          const fragment = context.getFragment(name)
          fragments.set(name, 0)
          const condition = fragment && typeFromAST(schema, fragment.typeCondition)
          known = fragment && condition ? walk(fragment.selectionSet, condition) : 0
          fragments.set(name, known)
        }
        cost += known
      }
    }
    return cost
  }
  return walk(selections, root)
}

const costRule =
  (maxCost: number): ValidationRule =>
  (context) => ({
    OperationDefinition(operation) {
      const root = context.getSchema().getRootType(operation.operation)
      if (!root) return
      const cost = costOf(context, operation.selectionSet, root)
      if (cost <= maxCost) return
      context.reportError(
        new GraphQLError(
          `Query is too complex: it costs ${cost}, over the limit of ${maxCost} (each field of each item ` +
            `counts 1, and a list without a literal \`first\` counts as ${MAX_PAGE} items). Ask for fewer ` +
            'items (a smaller `first`) or fewer fields.',
          { nodes: operation, extensions: { code: TOO_COMPLEX } },
        ),
      )
    },
  })

/**
 * GraphQL Armor words every refusal "Syntax Error: …" and leaves it without a code. Each is reworded here:
 * what was too much, what to do instead, and one code for all of them. A validation rule's refusal is
 * reported like any other validation error; the token limit (counted while parsing, with no validation
 * context) is thrown, as the parser's own errors are.
 */
const refusal =
  (advice: string) =>
  (context: ValidationContext | null, error: GraphQLError): void => {
    const reworded = new GraphQLError(`${error.message.replace(/^Syntax Error: /, '')} ${advice}`, {
      extensions: { code: TOO_COMPLEX },
    })
    if (!context) throw reworded
    context.reportError(reworded)
  }

export interface OperationLimitsOptions {
  /**
   * The most an operation may cost (each field of each item counts 1; see MAX_COST).
   *
   * @default 25000 (MAX_COST)
   */
  maxCost?: number
}

/**
 * Bounds on operations, over HTTP and graphql-ws alike (both run through the envelop's parse and validate):
 * depth, aliases, tokens and directives by GraphQL Armor's defaults, cost by our own rule.
 */
export function useOperationLimits({ maxCost = MAX_COST }: OperationLimitsOptions = {}): Plugin[] {
  return [
    EnvelopArmorPlugin({
      // Armor's cost counts `first` only when it is a literal, so `first: $n` and no `first` were free.
      costLimit: { enabled: false },
      maxDepth: { onReject: [refusal('Nest fewer selections.')], propagateOnRejection: false },
      maxAliases: {
        onReject: [refusal('Use fewer aliases, or send several operations.')],
        propagateOnRejection: false,
      },
      maxDirectives: { onReject: [refusal('Use fewer directives.')], propagateOnRejection: false },
      maxTokens: { onReject: [refusal('Send a shorter operation.')] },
    }),
    { onValidate: ({ addValidationRule }) => addValidationRule(costRule(maxCost)) },
  ]
}
