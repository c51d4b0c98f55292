// The roles a backbone process can take (`rty serve --roles`); each decides which surfaces run on it.
export const ROLES = ['cloud', 'io', 'gate', 'admin', 'status', 'workers'] as const;
export type Role = (typeof ROLES)[number];

export function parseRoles(text: string): Set<Role> {
  const roles = new Set<Role>();
  for (const r of text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    if (!(ROLES as readonly string[]).includes(r))
      throw new Error(`unknown role "${r}"; roles are ${ROLES.join(', ')}`);
    roles.add(r as Role);
  }
  if (roles.size === 0) throw new Error(`no role given; roles are ${ROLES.join(', ')}`);
  return roles;
}
