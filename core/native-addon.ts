/**
 * A native addon that cannot load (better-sqlite3, socketcan), told in one line an operator can act on:
 * built on a newer system (a C or C++ library version this one lacks), built for another Node.js
 * (NODE_MODULE_VERSION), or missing. Either daemon's start then fails with EXIT_BROKEN_INSTALL: a restart
 * cannot cure it, so systemd does not retry (RestartPreventExitStatus=, docs/deployment.md).
 */
import { EXIT_BROKEN_INSTALL, StartupError } from './cli/exit-codes.js';

/** What to do about it, for the npm package `pkg`. */
export function addonAdvice(pkg: string): string {
  return `reinstall the canrelay package built for this system and its Node.js (from a source tree: npm rebuild ${pkg})`;
}

/** The one line for `cause`, the error thrown by loading the npm package `pkg` (exported for its test). */
export function addonLoadMessage(cause: unknown, pkg: string): string {
  const text = cause instanceof Error ? cause.message : String(cause);
  const libc = /version [`']((?:GLIBC|GLIBCXX)_[\d.]+)' not found/.exec(text)?.[1];
  if (libc !== undefined) {
    const file = /\(required by ([^)]+)\)/.exec(text)?.[1] ?? `the ${pkg} addon`;
    return (
      `${file} needs ${libc}, which this system's C/C++ library does not have: this canrelay build is for a newer system; ` +
      'install the package for this architecture on a supported system (docs/deployment.md, Requirements), or build canrelay on this system'
    );
  }
  const versions = [...text.matchAll(/NODE_MODULE_VERSION (\d+)/g)].map((m) => m[1]);
  if (versions.length >= 2 || /NODE_MODULE_VERSION/.test(text)) {
    const module = /module '([^']+)'/.exec(text)?.[1] ?? pkg;
    const detail = versions.length >= 2 ? `built for NODE_MODULE_VERSION ${versions[0]}, this Node.js ${process.version} needs ${versions[1]}` : text.replace(/\s+/g, ' ');
    return `the native addon ${module} was built for another Node.js (${detail}): ${addonAdvice(pkg)}`;
  }
  return `cannot load the native addon ${pkg} (${text.split('\n')[0]}): ${addonAdvice(pkg)}`;
}

/** The start-up error for an addon that cannot load. */
export function addonLoadError(cause: unknown, pkg: string): StartupError {
  return new StartupError(addonLoadMessage(cause, pkg), EXIT_BROKEN_INSTALL);
}
