/** Where tus lives (its own module, so the server can route to it without loading @tus/server). */
export const TUS_PATH = '/files'
