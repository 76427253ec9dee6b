/**
 * The user use cases: creation, the admin's listing and access changes (role,
 * deactivation, password reset), and a user's own password change. Every
 * change to a user's access bumps their token version in the same transaction
 * (Repo.ts) and drops this process's cached row (Identity.forget), so their
 * older tokens are refused from the next request on.
 */
import { Effect, Exit, Option } from "effect"
import type { Actor, Role } from "../Auth/CurrentUser.js"
import { Unauthorized } from "../Auth/Errors.js"
import { Identity } from "../Auth/Identity.js"
import { LoginThrottle, LoginThrottleLive } from "../Auth/LoginThrottle.js"
import { PasswordHasher } from "../Auth/Password.js"
import { Tokens } from "../Auth/Tokens.js"
import { DEFAULT_LIMIT, positionOf, toPage } from "../Kit/Pagination.js"
import { traced } from "../Observability/Span.js"
import type { CreateUserRequest, ListUsersParams, UpdateMeRequest } from "./Domain.js"
import { LastActiveAdmin, UserNotFound, WrongCurrentPassword } from "./Errors.js"
import { canCreateUser, canManageUsers } from "./Policy.js"
import { type AccessChange, toUser, UsersRepo } from "./Repo.js"

export class Users extends Effect.Service<Users>()("OpsDesk/Users/Users", {
  effect: Effect.gen(function*() {
    const repo = yield* UsersRepo
    const identity = yield* Identity
    const tokens = yield* Tokens
    const throttle = yield* LoginThrottle
    // Every hash goes through the hasher, so user management cannot starve logins of threads.
    const hasher = yield* PasswordHasher
    const gone = new Unauthorized({ message: "the user of this token no longer exists" })

    const found = (id: string) =>
      Effect.flatMap(
        repo.findById(id),
        Option.match({ onNone: () => Effect.fail(UserNotFound.of(id)), onSome: Effect.succeed })
      )

    const create = (actor: Actor, payload: CreateUserRequest) =>
      Effect.gen(function*() {
        yield* canCreateUser(actor)
        const passwordHash = yield* hasher.hash(payload.password)
        return yield* repo.insert(
          { username: payload.username, passwordHash, role: payload.role, email: payload.email ?? null },
          actor.id
        )
      }).pipe(traced("Users.create"))

    /** The caller; a user deleted while the request was on its way is a 401 like any other. */
    const me = (actor: Actor) =>
      Effect.flatMap(repo.findById(actor.id), Option.match({ onNone: () => Effect.fail(gone), onSome: Effect.succeed }))

    /** The caller's own account details (for now the email address): anyone may change their own. */
    const updateMe = (actor: Actor, change: UpdateMeRequest) =>
      Effect.flatMap(
        repo.setEmail(actor.id, change.email, actor.id),
        Option.match({ onNone: () => Effect.fail(gone), onSome: Effect.succeed })
      ).pipe(traced("Users.updateMe"))

    const get = (actor: Actor, id: string) =>
      Effect.zipRight(canManageUsers(actor), found(id)).pipe(traced("Users.get"))

    const list = (actor: Actor, params: ListUsersParams) =>
      Effect.gen(function*() {
        yield* canManageUsers(actor)
        const after = yield* positionOf(params.cursor)
        const limit = params.limit ?? DEFAULT_LIMIT
        const rows = yield* repo.list({ role: params.role, active: params.active, after, limit })
        return toPage(rows, limit, toUser)
      }).pipe(traced("Users.list"))

    const changeAccess = (actor: Actor, id: string, change: AccessChange) =>
      Effect.gen(function*() {
        yield* canManageUsers(actor)
        const user = yield* repo.changeAccess(id, change, actor.id)
        yield* identity.forget(id)
        return user
      })

    const changeRole = (actor: Actor, id: string, role: Role) =>
      changeAccess(actor, id, { role }).pipe(traced("Users.changeRole"))

    const deactivate = (actor: Actor, id: string) =>
      changeAccess(actor, id, { active: false }).pipe(traced("Users.deactivate"))

    const reactivate = (actor: Actor, id: string) =>
      changeAccess(actor, id, { active: true }).pipe(
        // Reactivating removes no admin, so the last-admin guard cannot refuse it.
        Effect.catchIf((e): e is LastActiveAdmin => e instanceof LastActiveAdmin, Effect.die),
        traced("Users.reactivate")
      )

    const resetPassword = (actor: Actor, id: string, password: string) =>
      Effect.gen(function*() {
        yield* canManageUsers(actor)
        const passwordHash = yield* hasher.hash(password)
        const changed = yield* repo.setPassword(id, passwordHash, { actorId: actor.id, action: "user.password_reset" })
        if (Option.isNone(changed)) return yield* Effect.fail(UserNotFound.of(id))
        yield* identity.forget(id)
      }).pipe(traced("Users.resetPassword"))

    /**
     * The caller's own password: the current one must be right (checked
     * through the login throttle, so this is no way around it for whoever
     * holds a stolen token). Every other session ends; the answer is a fresh
     * token for this one.
     */
    const changeOwnPassword = (
      actor: Actor,
      ip: string | undefined,
      currentPassword: string,
      newPassword: string
    ) =>
      Effect.gen(function*() {
        const wrong = new WrongCurrentPassword({ message: "currentPassword is not your password" })
        const admitted = yield* throttle.begin({ username: actor.username, ip })
        // Counted as a failure until the password proves right; taken back if it gets no answer (as a login).
        const stored = yield* Effect.gen(function*() {
          yield* Effect.sleep(admitted.delay)
          const hash = yield* repo.findPasswordHash(actor.id)
          if (Option.isNone(hash)) return yield* Effect.fail(gone)
          const ok = yield* hasher.verify(currentPassword, hash.value, admitted.client)
          return { hash: hash.value, ok }
        }).pipe(
          Effect.onExit(Exit.match({
            onFailure: () => admitted.abandoned,
            onSuccess: ({ ok }) => (ok ? admitted.succeeded : Effect.void)
          }))
        )
        if (!stored.ok) return yield* Effect.fail(wrong)
        const passwordHash = yield* hasher.hash(newPassword)
        const version = yield* repo.setPassword(
          actor.id,
          passwordHash,
          { actorId: actor.id, action: "user.password_change" },
          stored.hash
        )
        yield* identity.forget(actor.id)
        // Changed by another request since the check: the password just proven is no longer the current one.
        if (Option.isNone(version)) return yield* Effect.fail(wrong)
        return yield* tokens.issue({ ...actor, tokenVersion: version.value })
      }).pipe(traced("Users.changeOwnPassword"))

    return {
      create,
      me,
      updateMe,
      get,
      list,
      changeRole,
      deactivate,
      reactivate,
      resetPassword,
      changeOwnPassword
    } as const
  }),
  dependencies: [UsersRepo.Default, Identity.Default, Tokens.Default, LoginThrottleLive, PasswordHasher.Default]
}) {}
