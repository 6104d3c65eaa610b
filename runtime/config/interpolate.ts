import { QQBotError } from '../errors.ts';

const PATTERN = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

export class MissingVariableError extends QQBotError {
  readonly variable: string;
  constructor(variable: string) {
    super('E_CONFIG_ENV', `environment variable ${variable} is not set (use \${${variable}:-default} for a default)`, { variable });
    this.variable = variable;
  }
}

/** Expands `${VAR}` and `${VAR:-default}`; `$${` stays a literal `${`. */
export function interpolate(text: string, env: NodeJS.ProcessEnv): string {
  const escaped = text.split('$${');
  return escaped
    .map((part) =>
      part.replace(PATTERN, (_match, name: string, fallback: string | undefined) => {
        const value = env[name];
        if (value !== undefined && value !== '') return value;
        if (fallback !== undefined) return fallback;
        throw new MissingVariableError(name);
      }),
    )
    .join('${');
}
